"""The slot scanner: the shared case file, hostile inputs, and size limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.slots import MAX_PAGE_BYTES, scan

CASES = json.loads((Path(__file__).parent.parent / "data" / "rewrite_cases.json").read_text(encoding="utf-8"))["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_rewrite_case(case: dict[str, object]) -> None:
    template = scan(str(case["input"]).encode("utf-8"))
    fills = {k: v.encode("utf-8") for k, v in dict(case["fills"]).items()}  # type: ignore[call-overload]
    assert template.render(fills) == str(case["expected"]).encode("utf-8")
    assert template.reason == case["reason"]


def test_unsafe_page_is_returned_byte_for_byte() -> None:
    page = b"\xff\xfe<p13n-slot name=a>\x80x<p13n-slot name=b>"  # invalid UTF-8 and nesting
    template = scan(page)
    assert template.reason == "nested_slot"
    assert template.render({"a": b"A"}) == page


def test_invalid_utf8_around_slots_is_kept() -> None:
    page = b'\xc3\x28 <p13n-slot name="a">fb</p13n-slot> \xa0\xa1'
    assert scan(page).render({"a": b"OK"}) == b"\xc3\x28 OK \xa0\xa1"


def test_slot_attributes_are_parsed_for_the_decision() -> None:
    template = scan(b"<p13n-slot kind=recommend NAME='recs' count=\"6\" item=product-card disabled>x</p13n-slot>")
    (slot,) = template.slots
    assert slot.name == "recs"
    assert slot.attrs == {"kind": "recommend", "name": "recs", "count": "6", "item": "product-card", "disabled": ""}
    assert slot.fallback == b"x"


def test_multi_megabyte_page_is_scanned_in_linear_time() -> None:
    filler = b"<div class='row'>" + b"lorem ipsum " * 40 + b"</div>\n"
    body = filler * 6000 + b"<p13n-slot name=hero>fb</p13n-slot>" + filler * 6000
    assert len(body) > 5_000_000
    template = scan(body)
    assert [s.name for s in template.slots] == ["hero"]
    assert template.render({"hero": b"H"}) == body.replace(b"<p13n-slot name=hero>fb</p13n-slot>", b"H")


@pytest.mark.timeout(20)  # a guard against quadratic scanning, not a benchmark
def test_many_unclosed_comments_swallow_the_rest_of_the_page() -> None:
    body = b"<!--" + b"x<!--" * 200_000 + b"<p13n-slot name=a>b</p13n-slot>"
    template = scan(body)
    assert template.slots == ()
    assert template.render({"a": b"A"}) == body


def test_oversized_page_is_left_alone() -> None:
    body = b"<p13n-slot name=a>b</p13n-slot>" + b" " * MAX_PAGE_BYTES
    template = scan(body)
    assert template.reason == "page_too_large"
    assert template.render({"a": b"A"}) == body


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash_and_round_trip_without_fills(data: bytes) -> None:
    template = scan(data)
    if template.reason or not template.slots:
        assert template.render({}) == data
    else:
        # rendering with no fills restores every fallback; only the tags disappear
        assert len(template.render({})) <= len(data)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from([b"<p13n-slot name=a>", b"</p13n-slot>", b"<!--", b"-->", b"x", b"<script>", b"</script>"]), max_size=30
    )
)
def test_marker_soup_is_either_clean_or_untouched(parts: list[bytes]) -> None:
    data = b"".join(parts)
    template = scan(data)
    if template.reason:
        assert template.render({"a": b"A"}) == data
