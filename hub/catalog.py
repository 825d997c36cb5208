"""``p13n catalog import``: items from CSV or JSON into the warehouse ``items`` table.

Fields: ``id``, ``title``, ``description``, ``tags``, ``category``, ``price``,
``currency``, ``url``. ``--map id=StockCode,title=Description,price=UnitPrice`` maps
other column names (the Online Retail sample uses those). UTF-8 or Latin-1; the first
row of an id wins; rows without an id or title are skipped and counted.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub.ingest.normalize import minor_units
from hub.storage import open_store

FIELDS = ("id", "title", "description", "tags", "category", "price", "currency", "url")
#: Longest text kept per field (characters).
MAX_FIELD_CHARS = {"id": 128, "title": 512, "description": 4096, "tags": 1024, "category": 128, "currency": 3, "url": 2048}


@dataclass
class ImportReport:
    imported: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


def parse_mapping(spec: str) -> dict[str, str]:
    """``id=StockCode,title=Description`` → {field: source column}."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        target, sep, source = part.partition("=")
        if not sep or target.strip() not in FIELDS or not source.strip():
            raise ValueError(f"bad mapping {part!r}: use FIELD=COLUMN with FIELD one of {FIELDS}")
        out[target.strip()] = source.strip()
    return out


def _rows(path: Path) -> Iterable[Mapping[str, Any]]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    if path.suffix.lower() == ".json":
        doc = json.loads(text)
        items = doc.get("items", doc) if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            raise ValueError(f"{path}: expected a JSON list of items")
        return [i for i in items if isinstance(i, dict)]
    return list(csv.DictReader(io.StringIO(text)))


def to_items(
    rows: Iterable[Mapping[str, Any]], mapping: Mapping[str, str], default_currency: str
) -> tuple[list[dict[str, Any]], ImportReport]:
    report = ImportReport()
    items: dict[str, dict[str, Any]] = {}
    for row in rows:
        value = {f: row.get(mapping.get(f, f)) for f in FIELDS}
        item_id = str(value["id"] or "").strip()
        title = str(value["title"] or "").strip()
        if not item_id:
            report.skipped["missing_id"] += 1
            continue
        if not title:
            report.skipped["missing_title"] += 1
            continue
        if item_id in items:
            report.skipped["duplicate_id"] += 1
            continue
        currency = str(value["currency"] or default_currency).strip().upper()[:3]
        price_minor = None
        if value["price"] not in (None, ""):
            try:
                price_minor = minor_units(float(value["price"]), currency)
            except (TypeError, ValueError):
                report.skipped["bad_price"] += 1
                continue
        tags = value["tags"]
        if isinstance(tags, list):
            tags = " ".join(str(t) for t in tags)
        item = {
            "item_id": item_id[: MAX_FIELD_CHARS["id"]],
            "title": title[: MAX_FIELD_CHARS["title"]],
            "description": str(value["description"] or "")[: MAX_FIELD_CHARS["description"]],
            "tags": str(tags or "")[: MAX_FIELD_CHARS["tags"]],
            "category": str(value["category"] or "")[: MAX_FIELD_CHARS["category"]],
            "price_minor": price_minor,
            "currency": currency if price_minor is not None else None,
            "url": str(value["url"] or "")[: MAX_FIELD_CHARS["url"]],
        }
        items[item_id] = item
    report.imported = len(items)
    return list(items.values()), report


def import_file(
    path: Path, data_dir: Path, mapping: Mapping[str, str], default_currency: str = "EUR", database_url: str = ""
) -> ImportReport:
    items, report = to_items(_rows(path), mapping, default_currency)
    storage = open_store(data_dir, database_url)
    try:
        storage.upsert_items(items, datetime.now(UTC).isoformat(timespec="seconds"))
    finally:
        storage.close()
    return report
