"""Event normalization: timestamps against the receive time, URLs, money."""

from __future__ import annotations

from typing import Any

from hub.ingest.normalize import normalize

RECEIVED = "2026-11-26T10:00:00.000Z"
RECEIVED_MS = 1_795_687_200_000  # the same instant


def ts_of(raw: Any) -> str:
    row = normalize({"event_id": "e-00000001", "type": "page_view", "received_at": RECEIVED, "ts": raw})
    return str(row["ts"])


def test_client_timestamps_are_trusted_within_the_skew_window_only() -> None:
    assert ts_of(RECEIVED_MS - 1_500) == "2026-11-26T09:59:58.500Z"  # epoch ms, the SDK's Date.now()
    assert ts_of((RECEIVED_MS - 60_000) / 1000) == "2026-11-26T09:59:00.000Z"  # epoch seconds
    assert ts_of("2026-11-26T11:00:00+01:00") == "2026-11-26T10:00:00.000Z"  # ISO with an offset
    assert ts_of("2026-11-26T09:00:00") == "2026-11-26T09:00:00.000Z"  # naive ISO is UTC
    # a clock more than 7 days off, garbage, or nothing: the receive time stands in
    assert ts_of(RECEIVED_MS - 8 * 86_400_000) == RECEIVED
    assert ts_of(RECEIVED_MS + 8 * 86_400_000) == RECEIVED
    assert ts_of("2020-01-01T00:00:00Z") == RECEIVED
    assert ts_of("yesterday") == RECEIVED
    assert ts_of(None) == RECEIVED
    assert ts_of(True) == RECEIVED


def test_urls_and_money_are_canonical() -> None:
    row = normalize(
        {
            "event_id": "e-00000002",
            "type": "purchase",
            "received_at": RECEIVED,
            "url": "HTTPS://Shop.Example:443/p/1?utm_source=x&gclid=y&size=m#top",
            "total": {"amount": 19.99, "currency": "eur"},
            "context": {"device": "Mobile", "country": "de"},
        }
    )
    assert row["url"] == "https://shop.example/p/1?size=m"
    assert (row["amount_minor"], row["currency"]) == (1999, "EUR")
    assert '"device":"mobile"' in row["context"] and '"country":"DE"' in row["context"]
