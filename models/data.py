"""Interaction and item tables: loading CSV files and building the user × item matrix.

Interactions CSV: ``user_id,item_id[,weight][,timestamp]``; items CSV:
``item_id,title[,description][,tags]``. Extra columns are ignored; UTF-8 and Latin-1
are both read (UTF-8 first). Ids are strings; matrices index them densely.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from models.weights import EVENT_WEIGHTS


class DataError(ValueError):
    """A data file cannot be used; ``where`` names the file and line."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Interactions:
    users: np.ndarray  # object array of str
    items: np.ndarray  # object array of str
    weights: np.ndarray  # float32
    timestamps: np.ndarray  # float64 seconds, NaN when unknown

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, mask: np.ndarray) -> Interactions:
        return Interactions(self.users[mask], self.items[mask], self.weights[mask], self.timestamps[mask])


@dataclass(frozen=True)
class Item:
    id: str
    title: str
    description: str = ""
    tags: str = ""
    category: str = ""

    @property
    def described(self) -> bool:
        """Whether the catalog gave any text (an item seen only in events has none)."""
        return bool(self.title or self.description or self.tags)

    @property
    def text(self) -> str:
        """Title, description and tags; an item known only by its id (seen in events,
        not in the catalog) is described by the id's words, so the content model still
        has a vocabulary."""
        return " ".join(p for p in (self.title, self.description, self.tags) if p) or re.sub(r"[^0-9A-Za-z]+", " ", self.id)


@dataclass
class Index:
    """Dense integer ids for string ids."""

    ids: list[str] = field(default_factory=list)
    pos: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, values: Iterable[str]) -> Index:
        idx = cls()
        for v in values:
            idx.add(v)
        return idx

    def add(self, value: str) -> int:
        p = self.pos.get(value)
        if p is None:
            p = self.pos[value] = len(self.ids)
            self.ids.append(value)
        return p

    def __len__(self) -> int:
        return len(self.ids)


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _parse_time(value: str) -> float:
    value = value.strip()
    if not value:
        return float("nan")
    try:
        return float(value)
    except ValueError:
        pass
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%m/%d/%Y %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, fmt).timestamp()
        except ValueError:
            continue
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return float("nan")


def load_interactions(path: Path, event_weights: Mapping[str, float] | None = None) -> Interactions:
    """Read interactions. A row's weight is its ``weight`` column, else the weight of its
    ``event`` column (``view``, ``click``, ``add_to_cart``, ``purchase`` … mapped by
    ``event_weights``, default :data:`EVENT_WEIGHTS`), else 1. Rows with an unknown event
    or a non-positive weight are skipped."""
    weights_by_event = dict(EVENT_WEIGHTS if event_weights is None else event_weights)
    reader = csv.DictReader(io.StringIO(_read_text(path)))
    fields = {f.strip().lower(): f for f in reader.fieldnames or []}
    for needed in ("user_id", "item_id"):
        if needed not in fields:
            raise DataError(str(path), f"missing column {needed!r} (have {sorted(fields)})")
    users: list[str] = []
    items: list[str] = []
    weights: list[float] = []
    times: list[float] = []
    for line, row in enumerate(reader, start=2):
        u, i = (row.get(fields["user_id"]) or "").strip(), (row.get(fields["item_id"]) or "").strip()
        if not u or not i:
            continue
        w = 1.0
        event = (row.get(fields["event"]) or "").strip().lower() if "event" in fields else ""
        if event:
            if event not in weights_by_event:
                continue
            w = weights_by_event[event]
        if "weight" in fields and (row.get(fields["weight"]) or "").strip():
            try:
                w = float(row[fields["weight"]])
            except ValueError as e:
                raise DataError(f"{path}:{line}", f"weight {row[fields['weight']]!r} is not a number") from e
        if w <= 0:
            continue
        users.append(u)
        items.append(i)
        weights.append(w)
        times.append(_parse_time(row.get(fields["timestamp"], "") or "") if "timestamp" in fields else float("nan"))
    return Interactions(
        np.array(users, dtype=object),
        np.array(items, dtype=object),
        np.array(weights, dtype=np.float32),
        np.array(times, dtype=np.float64),
    )


def load_items(path: Path) -> list[Item]:
    reader = csv.DictReader(io.StringIO(_read_text(path)))
    fields = {f.strip().lower(): f for f in reader.fieldnames or []}
    if "item_id" not in fields or "title" not in fields:
        raise DataError(str(path), f"needs columns 'item_id' and 'title' (have {sorted(fields)})")

    def get(row: Mapping[str, str | None], name: str) -> str:
        return (row.get(fields[name]) or "").strip() if name in fields else ""

    out: dict[str, Item] = {}
    for row in reader:
        item_id = get(row, "item_id")
        if item_id and item_id not in out:
            out[item_id] = Item(item_id, get(row, "title"), get(row, "description"), get(row, "tags"), get(row, "category"))
    return list(out.values())


def write_interactions(path: Path, data: Interactions) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "weight", "timestamp"])
        for u, i, wt, t in zip(data.users, data.items, data.weights, data.timestamps, strict=True):
            w.writerow([u, i, f"{wt:g}", "" if np.isnan(t) else f"{t:.0f}"])


def user_item_matrix(data: Interactions, users: Index, items: Index) -> sp.csr_matrix:
    """Summed weights as a users × items CSR matrix (float32); unknown ids are skipped."""
    rows = np.fromiter((users.pos.get(u, -1) for u in data.users), dtype=np.int64, count=len(data))
    cols = np.fromiter((items.pos.get(i, -1) for i in data.items), dtype=np.int64, count=len(data))
    keep = (rows >= 0) & (cols >= 0)
    m = sp.csr_matrix((data.weights[keep], (rows[keep], cols[keep])), shape=(len(users), len(items)), dtype=np.float32)
    m.sum_duplicates()
    return m


def seen_by_user(data: Interactions) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for u, i in zip(data.users, data.items, strict=True):
        out.setdefault(u, set()).add(i)
    return out


def popularity(data: Interactions, items: Sequence[str] | None = None) -> list[str]:
    """Item ids by summed weight, most popular first (ties by id)."""
    totals: dict[str, float] = {}
    for i, w in zip(data.items, data.weights, strict=True):
        totals[i] = totals.get(i, 0.0) + float(w)
    if items is not None:
        for i in items:
            totals.setdefault(i, 0.0)
    return sorted(totals, key=lambda k: (-totals[k], k))
