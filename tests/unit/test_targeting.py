"""Rule conditions and bucketing against the shared cross-SDK conformance cases."""

from __future__ import annotations

import pytest

from models.targeting import bucket_hash, eval_condition, padded_version_string


def test_every_eval_condition_case_passes(targeting_cases: dict[str, list[list[object]]]) -> None:
    cases = targeting_cases["evalCondition"]
    assert len(cases) == 248
    failures = []
    for case in cases:
        name, condition, attributes, expected = case[:4]
        groups = case[4] if len(case) > 4 else None
        if eval_condition(attributes, condition, groups) is not expected:  # type: ignore[arg-type]
            failures.append(name)
    assert failures == []


def test_every_hash_case_passes(targeting_cases: dict[str, list[list[object]]]) -> None:
    cases = targeting_cases["hash"]
    assert len(cases) == 15
    for seed, value, version, expected in cases:
        assert bucket_hash(seed, value, version) == expected, (seed, value, version)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("condition", "attributes", "expected"),
    [
        ({"device": "mobile"}, {"device": "mobile"}, True),
        ({"device": "mobile"}, {"device": "desktop"}, False),
        ({"hour": {"$gte": 22}}, {"hour": 23}, True),
        ({"hour": {"$gte": 22}}, {}, False),
        ({"country": {"$in": ["DE", "AT"]}}, {"country": "AT"}, True),
        ({"$or": [{"a": 1}, {"b": 2}]}, {"b": 2}, True),
        ({"segments": {"$elemMatch": {"$eq": "vip"}}}, {"segments": ["new", "vip"]}, True),
        ({"bogus": {"$unknownOp": 1}}, {"bogus": 1}, False),
    ],
)
def test_conditions_used_by_slot_definitions(condition: dict[str, object], attributes: dict[str, object], expected: bool) -> None:
    assert eval_condition(attributes, condition) is expected


def test_version_strings_compare_numerically() -> None:
    assert padded_version_string("1.2.10") > padded_version_string("1.2.9")
    assert padded_version_string("v1.0.0-beta") < padded_version_string("1.0.0")


def test_compiled_conditions_agree_with_the_interpreter_on_every_case(targeting_cases: dict[str, list[list[object]]]) -> None:
    from models.targeting import compile_condition

    failures = []
    for case in targeting_cases["evalCondition"]:
        name, condition, attributes, expected = case[:4]
        groups = case[4] if len(case) > 4 else None
        if compile_condition(condition, groups)(attributes) is not expected:  # type: ignore[arg-type]
            failures.append(name)
    assert failures == []
