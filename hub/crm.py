"""CRM sync: pull profiles from a REST API into the warehouse ``users`` table.

Configured by a JSON file (docs/INGESTION.md): base URL, an auth header, pagination
(``cursor`` or ``page``), incremental filter (``updated_since`` parameter and/or
ETag), the id field and a field mapping. Requests go through httpx with retries on
5xx and timeouts (exponential backoff with jitter) and honour ``429 Retry-After``.
CRM ids are pseudonymized before storage, mapped PII attributes are encrypted
(``hub.pii``) and erased subjects are skipped; the sync state (cursor high-water mark,
each page's ETag) is kept in the warehouse so each run only fetches what changed.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from hub.pii import PiiCipher
from hub.storage import HubStore
from models.pseudonym import pseudonym

log = logging.getLogger(__name__)

#: Attribute names treated as PII unless the config lists its own.
DEFAULT_PII = (
    "email",
    "name",
    "first_name",
    "last_name",
    "full_name",
    "phone",
    "mobile",
    "address",
    "street",
    "postcode",
    "zip",
    "birth_date",
    "date_of_birth",
)


class CrmError(RuntimeError):
    """The CRM could not be synced; ``status`` is the last HTTP status (0: no answer)."""

    def __init__(self, status: int, problem: str) -> None:
        self.status = status
        super().__init__(f"CRM sync failed ({status or 'no answer'}): {problem}")


@dataclass(frozen=True)
class CrmConfig:
    url: str
    items_field: str = "data"
    id_field: str = "id"
    updated_field: str = "updated_at"
    pagination: str = "cursor"  # or "page"
    cursor_param: str = "cursor"
    next_cursor_field: str = "next_cursor"
    page_param: str = "page"
    page_size_param: str = "per_page"
    page_size: int = 100
    updated_since_param: str = "updated_since"
    auth_header: str = ""  # "Authorization: Bearer …"
    mapping: Mapping[str, str] = field(default_factory=dict)  # attribute → CRM field
    #: Mapped attributes that are PII: stored encrypted (AES-256-GCM), never sent to edges.
    pii: tuple[str, ...] = DEFAULT_PII
    timeout_s: float = 10.0
    max_retries: int = 5
    max_pages: int = 10_000

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> CrmConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(doc) - known
        if unknown:
            raise ValueError(f"unknown CRM settings {sorted(unknown)}")
        if not str(doc.get("url", "")).startswith(("http://", "https://")):
            raise ValueError("CRM 'url' must be an http(s) URL")
        if doc.get("pagination", "cursor") not in ("cursor", "page"):
            raise ValueError("CRM 'pagination' must be 'cursor' or 'page'")
        doc = dict(doc)
        if "pii" in doc:
            if not isinstance(doc["pii"], list) or not all(isinstance(p, str) for p in doc["pii"]):
                raise ValueError("CRM 'pii' must be a list of attribute names")
            doc["pii"] = tuple(doc["pii"])
        return cls(**doc)


@dataclass
class SyncReport:
    pages: int = 0
    profiles: int = 0
    retries: int = 0
    rate_limited: int = 0
    not_modified: bool = False


Sleep = Callable[[float], None]


class CrmSync:
    def __init__(
        self, config: CrmConfig, storage: HubStore, pseudonym_key: bytes, cipher: PiiCipher, sleep: Sleep = time.sleep
    ) -> None:
        self.config = config
        self.cipher = cipher
        self.storage = storage
        self.key = pseudonym_key
        self.sleep = sleep
        headers = {}
        if config.auth_header:
            name, _, value = config.auth_header.partition(":")
            headers[name.strip()] = value.strip()
        self.client = httpx.Client(timeout=config.timeout_s, headers=headers, follow_redirects=False)

    def close(self) -> None:
        self.client.close()

    def _get(self, params: dict[str, Any], etag: str, report: SyncReport) -> httpx.Response:
        delay = 0.5
        last_status = 0
        for attempt in range(self.config.max_retries + 1):
            headers = {"If-None-Match": etag} if etag else {}
            try:
                resp = self.client.get(self.config.url, params=params, headers=headers)
            except (httpx.TimeoutException, httpx.TransportError) as e:
                last_status = 0
                problem = type(e).__name__
            else:
                last_status = resp.status_code
                if resp.status_code == 429:
                    report.rate_limited += 1
                    retry_after = resp.headers.get("retry-after", "1")
                    wait = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else delay
                    if attempt < self.config.max_retries:
                        self.sleep(min(wait, 60.0))
                        report.retries += 1
                        continue
                    raise CrmError(429, "still rate limited after retries")
                if resp.status_code < 500:
                    return resp
                problem = f"HTTP {resp.status_code}"
            if attempt < self.config.max_retries:
                report.retries += 1
                log.warning("CRM request failed (%s); retry %d in %.1fs", problem, attempt + 1, delay)
                self.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 30.0)
        raise CrmError(last_status, f"gave up after {self.config.max_retries} retries")

    def run_once(self) -> SyncReport:
        """Fetch what changed. Each page's ETag is kept with what that page led to (the
        next cursor, its record count), so a page answered ``304 Not Modified`` is
        skipped and the walk goes on: a change on page 5 is found even when pages 1-4
        did not change."""
        c = self.config
        state = self.storage.crm_state()
        since = state.get("updated_since", "")
        known: dict[str, dict[str, Any]] = orjson.loads(state["pages"]) if state.get("pages") else {}
        report = SyncReport()
        cursor: str | None = None
        page = 1
        newest = since
        seen: dict[str, dict[str, Any]] = {}
        unchanged = 0
        while report.pages < c.max_pages:
            params: dict[str, Any] = {c.page_size_param: c.page_size}
            if since and c.updated_since_param:
                params[c.updated_since_param] = since
            if c.pagination == "cursor" and cursor:
                params[c.cursor_param] = cursor
            if c.pagination == "page":
                params[c.page_param] = page
            key = (cursor or "") if c.pagination == "cursor" else str(page)
            before = known.get(key, {})
            resp = self._get(params, str(before.get("etag", "")), report)
            if resp.status_code == 304 and "etag" in before:
                unchanged += 1
                report.pages += 1
                seen[key] = before
                if c.pagination == "cursor":
                    cursor = before.get("next") or None
                    if not cursor:
                        break
                else:
                    if int(before.get("count", 0)) < c.page_size:
                        break
                    page += 1
                continue
            if resp.status_code >= 400 or resp.status_code == 304:
                raise CrmError(resp.status_code, resp.text[:200])
            report.pages += 1
            doc = resp.json()
            records = doc.get(c.items_field, []) if isinstance(doc, dict) else doc
            rows = []
            now = datetime.now(UTC).isoformat(timespec="seconds")
            for rec in records:
                if not isinstance(rec, dict) or rec.get(c.id_field) in (None, ""):
                    continue
                mapped = {attr: rec.get(src) for attr, src in c.mapping.items() if rec.get(src) is not None}
                attrs = {k: v for k, v in mapped.items() if k not in c.pii}
                pii = {k: v for k, v in mapped.items() if k in c.pii}
                updated = str(rec.get(c.updated_field) or "")
                newest = max(newest, updated)
                subject = pseudonym(str(rec[c.id_field]), self.key)
                sealed = self.cipher.encrypt(orjson.dumps(pii), aad=subject) if pii else None
                rows.append((subject, now, orjson.dumps(attrs).decode(), sealed))
            report.profiles += self.storage.upsert_crm_users(rows)
            next_cursor = doc.get(c.next_cursor_field) if c.pagination == "cursor" and isinstance(doc, dict) else None
            etag = resp.headers.get("etag", "")
            if etag:
                seen[key] = {"etag": etag, "next": next_cursor or "", "count": len(records)}
            if c.pagination == "cursor":
                cursor = next_cursor
                if not cursor:
                    break
            else:
                if len(records) < c.page_size:
                    break
                page += 1
        report.not_modified = report.pages > 0 and unchanged == report.pages
        self.storage.set_crm_state({"updated_since": newest, "pages": orjson.dumps(seen).decode()})
        return report
