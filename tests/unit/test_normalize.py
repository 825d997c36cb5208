"""Event normalization: timestamps against the receive time, URLs, money."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.ingest.batch import prepare_batch
from hub.ingest.normalize import canonical_url, normalize

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


def test_unparseable_urls_are_kept_as_given_never_raised() -> None:
    # an out-of-range port raised outside the try and stalled a whole NATS message
    for url in ("http://h:99999/", "http://h:abc/", "https://x:-1/", "http://[::1"):
        assert canonical_url(url) == url
    assert canonical_url("http://[::1]:8080/p?utm_source=a#f") == "http://[::1]:8080/p"


def test_an_edge_clock_far_from_the_hubs_cannot_choose_the_receive_day() -> None:
    hub_now = "2026-11-26T10:00:00.000Z"
    event = {"event_id": "e-00000003", "type": "page_view", "received_at": "2001-01-01T00:00:00.000Z"}
    assert normalize(event, hub_now)["received_at"] == hub_now
    buffered = {**event, "received_at": "2026-11-24T10:00:00.000Z"}  # an edge that was offline two days
    assert normalize(buffered, hub_now)["received_at"] == "2026-11-24T10:00:00.000Z"


events = st.fixed_dictionaries(
    {"type": st.sampled_from(["page_view", "click", "add_to_cart", "purchase", "identify", "consent", "nope"])},
    optional={
        "event_id": st.text(min_size=8, max_size=40),
        "url": st.one_of(
            st.text(max_size=60), st.builds(lambda p: f"http://h:{p}/x", st.integers(min_value=-10, max_value=10**6))
        ),
        "received_at": st.one_of(st.text(max_size=30), st.sampled_from(["2001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])),
        "ts": st.one_of(st.integers(), st.floats(allow_nan=False), st.text(max_size=30)),
        "item_id": st.text(max_size=20),
        "context": st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=8), st.integers()), max_size=4),
        "price": st.fixed_dictionaries({"amount": st.floats(allow_nan=False), "currency": st.text(max_size=4)}),
    },
)


@settings(max_examples=400, deadline=None)
@given(batch=st.lists(st.one_of(events, st.integers(), st.text(max_size=5)), max_size=20))
def test_preparing_a_batch_never_raises_and_every_event_is_accounted_for(batch: list[Any]) -> None:
    prepared = prepare_batch(batch, "nats", RECEIVED, True, 0, None)
    report = prepared.report
    assert len(prepared.rows) + sum(report.dead.values()) + report.suppressed == len(batch)
    assert len(report.results) == len(batch) and len(prepared.dead_rows) == sum(report.dead.values())
    assert all(day[:4].isdigit() for day in prepared.lake)  # every lake day is a real date
