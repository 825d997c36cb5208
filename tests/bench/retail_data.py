"""The Online Retail sample (tests/fixtures/data; licence and attribution in its
README) as interactions and described items, for the benchmarks that use it."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import numpy as np

from models.data import Interactions, Item

REPO = Path(__file__).resolve().parents[2]
RETAIL = REPO / "tests" / "fixtures" / "data" / "online-retail-sample.csv"


def online_retail() -> tuple[Interactions, dict[str, Item]]:
    """Customers × stock codes, one interaction per invoice line, in invoice time; the
    stock descriptions as item text."""
    users, items, stamps = [], [], []
    text: dict[str, str] = {}
    with RETAIL.open(encoding="latin-1") as f:
        for row in csv.DictReader(f):
            if not row["CustomerID"] or float(row["Quantity"]) <= 0:
                continue
            users.append(row["CustomerID"])
            items.append(row["StockCode"])
            stamps.append(datetime.strptime(row["InvoiceDate"], "%Y-%m-%d %H:%M:%S").timestamp())
            text[row["StockCode"]] = row["Description"]
    n = len(users)
    data = Interactions(
        np.array(users, dtype=object), np.array(items, dtype=object), np.ones(n, dtype=np.float32), np.array(stamps)
    )
    return data, {i: Item(i, t) for i, t in text.items()}
