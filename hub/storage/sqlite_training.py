"""What training may read from the SQLite warehouse (see ``HubStore.training_rows``).

The items of an event are read as the edge's sessions read them
(``models.session.event_items``): its ``item_id``, a purchase's lines, the product a
page view shows. An event's subject is the user its anonymous id was linked to by an identify, else its
user id, else its anonymous id (as in the marts). Its events are used only when the
latest consent recorded under the subject — and under the visitor id the event came
with — includes ``personalization``, and no withdrawal is recorded under either: a
choice made before logging in still counts after, and a withdrawal anywhere wins.
Erased subjects' events are gone from the warehouse; the suppression list is checked
as well, for events that raced the erasure.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

from hub.storage.interface import TrainingRows
from hub.storage.sqlite_reads import latest_consent
from models.erasure import Tokenizer
from models.session import event_items, url_item

if TYPE_CHECKING:
    from hub.storage.sqlite import SqliteStore

#: Epoch seconds of an ISO time in SQLite (works on every SQLite the hub runs on).
_EPOCH = "(julianday(e.ts) - 2440587.5) * 86400.0"


#: What training reads of each event, in SQL on both backends ({epoch}: the event's
#: time in epoch seconds; {since}, {product}: placeholders for the receive time
#: from which, and for :data:`PRODUCT_PAGES`; the subject is stitched as the marts stitch).
TRAINING_SELECT = (
    "SELECT coalesce(i.user_id, e.user_id, e.anonymous_id), coalesce(e.anonymous_id, ''), e.type, e.item_id, "
    "e.url, CASE WHEN e.type = 'purchase' THEN e.props END, {epoch} "
    "FROM events e LEFT JOIN identities i ON i.anonymous_id = e.anonymous_id AND e.user_id IS NULL "
    "WHERE e.received_at >= {since} AND ((e.item_id IS NOT NULL AND e.item_id != '') OR e.type = 'purchase' "
    "OR (e.type = 'page_view' AND e.url LIKE {product}))"
)
#: Page views of product pages (their item is in the path).
PRODUCT_PAGES = "%/p/%"
CATALOG_SELECT = "SELECT item_id, title, description, tags, category FROM items"
PROFILE_COLUMNS = "subject, views, clicks, carts, purchases, category_views"


def training_rows(storage: SqliteStore, since: str) -> TrainingRows:
    consent = latest_consent(storage)
    wh = storage.reader(storage.data_dir / "warehouse.sqlite")
    try:
        out = collect(
            wh.execute(TRAINING_SELECT.format(epoch=_EPOCH, since="?", product="?"), (since, PRODUCT_PAGES)),
            consent,
            storage.tokenizer,
            storage.suppressed,
        )
        out.catalog = catalog(wh.execute(CATALOG_SELECT))
    finally:
        wh.close()
    out.profiles = _profiles(storage, sorted(set(out.subjects)))
    return out


def collect(
    rows: Iterable[tuple[Any, ...]], consent: dict[str, bool], tokenizer: Tokenizer | None, suppressed: set[str]
) -> TrainingRows:
    """The consented, not erased subjects' interactions among ``rows`` (of ``TRAINING_SELECT``)."""
    out = TrainingRows()
    allowed: dict[tuple[str, str], bool] = {}
    no_choice: set[str] = set()
    declined: set[str] = set()
    erased: set[str] = set()
    for subject, visitor, kind, item_id, url, props, ts in rows:
        if not subject or ts is None:
            continue
        key = (subject, visitor)
        ok = allowed.get(key)
        if ok is None:
            ok = allowed[key] = _allowed(subject, visitor, consent, tokenizer, suppressed, no_choice, declined, erased)
        if not ok:
            continue
        event = {"type": kind, "item_id": item_id, "url": url, **(orjson.loads(props) if props else {})}
        for item in event_items(event, url_item):
            out.subjects.append(subject)
            out.items.append(item)
            out.types.append(kind)
            out.times.append(float(ts))
    used = set(out.subjects)
    out.left_out = {
        "no_choice": len(no_choice - used),
        "declined": len(declined - used),
        "erased": len(erased - used),
    }
    return out


def catalog(rows: Iterable[tuple[Any, ...]]) -> list[dict[str, str]]:
    return [
        {"item_id": r[0], "title": r[1] or "", "description": r[2] or "", "tags": r[3] or "", "category": r[4] or ""}
        for r in rows
    ]


def profile_rows(rows: Iterable[tuple[Any, ...]]) -> dict[str, dict[str, Any]]:
    """Subject → the features training reads, from rows of ``PROFILE_COLUMNS``."""
    return {
        subject: {
            "views": views,
            "clicks": clicks,
            "carts": carts,
            "purchases": purchases,
            "category_views": orjson.loads(category_views) if category_views else {},
        }
        for subject, views, clicks, carts, purchases, category_views in rows
    }


def _allowed(
    subject: str,
    visitor: str,
    consent: dict[str, bool],
    tokenizer: Tokenizer | None,
    suppressed: set[str],
    no_choice: set[str],
    declined: set[str],
    erased: set[str],
) -> bool:
    if tokenizer is not None and suppressed and tokenizer.any_in((subject, visitor or None), suppressed):
        erased.add(subject)
        return False
    choices = [consent[k] for k in (subject, visitor) if k in consent]
    if not choices:
        no_choice.add(subject)
        return False
    if not all(choices):
        declined.add(subject)
        return False
    return True


def _profiles(storage: SqliteStore, subjects: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    marts = storage.reader(storage.data_dir / "marts.sqlite")
    try:
        for i in range(0, len(subjects), 900):
            chunk = subjects[i : i + 900]
            out.update(
                profile_rows(
                    marts.execute(
                        f"SELECT {PROFILE_COLUMNS} FROM user_features WHERE subject IN ({','.join('?' * len(chunk))})", chunk
                    )
                )
            )
    finally:
        marts.close()
    return out
