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


def training_rows(storage: SqliteStore, since: str) -> TrainingRows:
    consent = latest_consent(storage)
    tokenizer = storage.tokenizer
    suppressed = storage.suppressed
    out = TrainingRows()
    allowed: dict[tuple[str, str], bool] = {}
    no_choice: set[str] = set()
    declined: set[str] = set()
    erased: set[str] = set()
    wh = storage.reader(storage.data_dir / "warehouse.sqlite")
    try:
        rows = wh.execute(
            "SELECT coalesce(i.user_id, e.user_id, e.anonymous_id), coalesce(e.anonymous_id, ''), e.type, e.item_id, "
            f"e.url, CASE WHEN e.type = 'purchase' THEN e.props END, {_EPOCH} "
            "FROM events e LEFT JOIN identities i ON i.anonymous_id = e.anonymous_id AND e.user_id IS NULL "
            "WHERE e.received_at >= ? AND ((e.item_id IS NOT NULL AND e.item_id != '') OR e.type = 'purchase' "
            "OR (e.type = 'page_view' AND e.url LIKE '%/p/%'))",
            (since,),
        )
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
        out.catalog = [
            {"item_id": r[0], "title": r[1] or "", "description": r[2] or "", "tags": r[3] or "", "category": r[4] or ""}
            for r in wh.execute("SELECT item_id, title, description, tags, category FROM items")
        ]
    finally:
        wh.close()
    used = set(out.subjects)
    out.left_out = {
        "no_choice": len(no_choice - used),
        "declined": len(declined - used),
        "erased": len(erased - used),
    }
    out.profiles = _profiles(storage, sorted(used))
    return out


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
            for subject, views, clicks, carts, purchases, category_views in marts.execute(
                "SELECT subject, views, clicks, carts, purchases, category_views FROM user_features "
                f"WHERE subject IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                out[subject] = {
                    "views": views,
                    "clicks": clicks,
                    "carts": carts,
                    "purchases": purchases,
                    "category_views": orjson.loads(category_views) if category_views else {},
                }
    finally:
        marts.close()
    return out
