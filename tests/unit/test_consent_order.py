"""Consent choices are ordered by when the edge received them, never by the client's
clock, and a withdrawal never loses to a grant it raced with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import StoreFactory

T0 = "2026-11-26T10:00:00.000Z"
T1 = "2026-11-26T10:00:01.000Z"


def consent(event_id: str, categories: list[str], received_at: str, ts: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "consent",
        "anonymous_id": "visitorConsent000000001",
        "categories": categories,
        "source": "banner",
        "received_at": received_at,
        "ts": ts,
        "edge": "edge-1",
    }


def test_a_withdrawal_sent_with_an_old_client_clock_still_wins(tmp_path: Path, new_store: StoreFactory) -> None:
    storage = new_store(tmp_path)
    storage.ingest([consent("grant-000001", ["necessary", "personalization"], T0, T0)], "nats", T0)
    # the client claims the withdrawal happened six days earlier (inside the skew window)
    storage.ingest([consent("withdraw-0001", ["necessary"], T1, "2026-11-20T10:00:00.000Z")], "nats", T1)
    assert storage.consent_by_subject() == {"visitorConsent000000001": False}
    storage.close()


def test_a_grant_and_a_withdrawal_received_together_end_withdrawn(tmp_path: Path, new_store: StoreFactory) -> None:
    for order in (("g", "w"), ("w", "g")):
        storage = new_store(tmp_path / "".join(order))
        events = {
            "g": consent(f"grant-{order[0]}0000", ["necessary", "personalization"], T0, T1),
            "w": consent(f"withdraw-{order[0]}00", ["necessary"], T0, T0),
        }
        storage.ingest([events[k] for k in order], "nats", T0)
        assert storage.consent_by_subject() == {"visitorConsent000000001": False}, order
        storage.close()


def test_a_later_grant_after_a_withdrawal_counts(tmp_path: Path, new_store: StoreFactory) -> None:
    storage = new_store(tmp_path)
    storage.ingest([consent("withdraw-0002", ["necessary"], T0, T1)], "nats", T0)
    storage.ingest([consent("grant-000002", ["necessary", "personalization"], T1, T0)], "nats", T1)
    assert storage.consent_by_subject() == {"visitorConsent000000001": True}
    storage.close()
