"""Rule conditions and deterministic bucketing, compatible with GrowthBook's SDKs.

Conditions are MongoDB-style documents (``{"device": "mobile", "country": {"$in":
["DE", "AT"]}}``) evaluated with JavaScript's comparison and coercion rules, so a
rule that works in those SDKs works here. The shared cross-SDK case file
(``shared/conformance/targeting-cases.json``) is the specification; every case passes.

Written here rather than imported: the GrowthBook Python SDK (4.0) fails three of
those cases (JavaScript number/string coercion) and pulls an HTTP client stack into
the edge. Pure functions, no IO.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

Json = Any
SavedGroups = Mapping[str, Sequence[Json]]
_EMPTY_GROUPS: dict[str, list[Json]] = {}


# --------------------------------------------------------------------------- JS semantics
def _is_number(v: Json) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def js_number_to_string(v: float | int) -> str:
    """Format a number as JavaScript's ``String(n)`` does (for the usual range)."""
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        if v.is_integer() and abs(v) < 1e21:
            return str(int(v))
        text = repr(v)
        if "e" in text:
            mant, exp = text.split("e")
            sign = "-" if exp.startswith("-") else "+"
            return f"{mant}e{sign}{exp.lstrip('+-').lstrip('0') or '0'}"
        return text
    return str(v)


def js_to_string(v: Json) -> str:
    """JavaScript ``String(v)`` for JSON values (arrays join, objects are opaque)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if _is_number(v):
        return js_number_to_string(v)
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return ",".join("" if x is None else js_to_string(x) for x in v)
    return "[object Object]"


def js_to_number(v: Json) -> float:
    """JavaScript ``Number(v)`` for JSON values (NaN when not numeric)."""
    if v is None:
        return 0.0
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if _is_number(v):
        return float(v)
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return 0.0
        try:
            if s.lower().startswith(("0x", "0o", "0b")):
                return float(int(s, 0))
            if s in ("Infinity", "+Infinity", "-Infinity"):
                return float(s.replace("Infinity", "inf"))
            if s.lower() in ("inf", "+inf", "-inf", "nan", "infinity", "+infinity", "-infinity"):
                return math.nan
            return float(s)
        except ValueError:
            return math.nan
    if isinstance(v, list):
        return js_to_number(js_to_string(v))
    return math.nan


def _truthy(v: Json) -> bool:
    if v is None or v is False:
        return False
    if _is_number(v):
        return v != 0 and not (isinstance(v, float) and math.isnan(v))
    if isinstance(v, str):
        return v != ""
    return True


def _strict_equal(a: Json, b: Json) -> bool:
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, dict)):
        return False  # distinct objects are never === in JavaScript
    return bool(a == b)


def _same_value_zero(a: Json, b: Json) -> bool:
    if _is_number(a) and _is_number(b) and isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return _strict_equal(a, b)


def _primitive(v: Json) -> Json:
    return js_to_string(v) if isinstance(v, (list, dict)) else v


def _utf16_key(s: str) -> str | bytes:
    return s.encode("utf-16-be") if any(ord(c) > 0xFFFF for c in s) else s


def _js_compare(a: Json, b: Json) -> int | None:
    """JavaScript abstract relational comparison: -1, 0, 1, or None (undefined)."""
    a, b = _primitive(a), _primitive(b)
    if isinstance(a, str) and isinstance(b, str):
        ka, kb = _utf16_key(a), _utf16_key(b)
        if type(ka) is not type(kb):
            ka, kb = a.encode("utf-16-be"), b.encode("utf-16-be")
        return (ka > kb) - (ka < kb)  # type: ignore[operator]
    na, nb = js_to_number(a), js_to_number(b)
    if math.isnan(na) or math.isnan(nb):
        return None
    return (na > nb) - (na < nb)


def _js_key_order(obj: dict[str, Json]) -> list[str]:
    ints = sorted((k for k in obj if k.isdigit() and str(int(k)) == k), key=int)
    return ints + [k for k in obj if not (k.isdigit() and str(int(k)) == k)]


def js_stringify(v: Json) -> str:
    """``JSON.stringify`` for JSON values (JS number format and key order)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if _is_number(v):
        if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
            return "null"
        return js_number_to_string(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ",".join(js_stringify(x) for x in v) + "]"
    if isinstance(v, dict):
        items = (json.dumps(k, ensure_ascii=False) + ":" + js_stringify(v[k]) for k in _js_key_order(v))
        return "{" + ",".join(items) + "}"
    return "null"


# --------------------------------------------------------------------------- conditions
def get_path(attributes: Json, path: str) -> Json:
    """Follow a dotted path; a missing step yields ``None`` (JS ``null``)."""
    current = attributes
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def is_operator_object(obj: Json) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(str(k).startswith("$") for k in obj)


def get_type(v: Json) -> str:
    if v is None:
        return "null"
    if isinstance(v, list):
        return "array"
    if isinstance(v, bool):
        return "boolean"
    if _is_number(v):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "object"
    return "unknown"


def eval_condition(attributes: Json, condition: Json, saved_groups: SavedGroups | None = None) -> bool:
    """True when ``attributes`` satisfy ``condition``."""
    groups = saved_groups if saved_groups is not None else _EMPTY_GROUPS
    if not isinstance(condition, dict):
        return False
    for key, value in condition.items():
        if key == "$or":
            if not _eval_or(attributes, value, groups):
                return False
        elif key == "$nor":
            if _eval_or(attributes, value, groups):
                return False
        elif key == "$and":
            if not all(eval_condition(attributes, c, groups) for c in value):
                return False
        elif key == "$not":
            if eval_condition(attributes, value, groups):
                return False
        elif not _eval_value(value, get_path(attributes, key), groups):
            return False
    return True


def _eval_or(attributes: Json, conditions: Json, groups: SavedGroups) -> bool:
    if not conditions:
        return True
    return any(eval_condition(attributes, c, groups) for c in conditions)


def _eval_value(condition: Json, value: Json, groups: SavedGroups) -> bool:
    if isinstance(condition, str):
        return js_to_string(value) == condition
    if isinstance(condition, bool):
        return value is not None and _truthy(value) == condition
    if _is_number(condition):
        return bool(js_to_number(value) == condition)
    if condition is None:
        return value is None
    if isinstance(condition, list) or not is_operator_object(condition):
        return js_stringify(value) == js_stringify(condition)
    return all(_eval_operator(op, value, expected, groups) for op, expected in condition.items())


def _is_in(actual: Json, expected: Sequence[Json], insensitive: bool = False) -> bool:
    if insensitive:
        fold = [e.lower() if isinstance(e, str) else e for e in expected]

        def has(x: Json) -> bool:
            x = x.lower() if isinstance(x, str) else x
            return any(_same_value_zero(x, e) for e in fold)

    else:

        def has(x: Json) -> bool:
            return any(_same_value_zero(x, e) for e in expected)

    if isinstance(actual, list):
        return any(has(a) for a in actual)
    return has(actual)


def _is_in_all(actual: Json, expected: Json, groups: SavedGroups, insensitive: bool) -> bool:
    if not isinstance(actual, list) or not isinstance(expected, list):
        return False
    for e in expected:
        if insensitive and isinstance(e, str):
            ok = any(isinstance(a, str) and a.lower() == e.lower() for a in actual)
        else:
            ok = any(_eval_value(e, a, groups) for a in actual)
        if not ok:
            return False
    return True


def _elem_match(actual: Json, expected: Json, groups: SavedGroups) -> bool:
    if not isinstance(actual, list):
        return False
    if is_operator_object(expected):
        return any(_eval_value(expected, el, groups) for el in actual)
    return any(eval_condition(el, expected, groups) for el in actual)


_VERSION_STRIP = re.compile(r"(^v|\+.*$)")
_VERSION_SPLIT = re.compile(r"[-.]")
_DIGITS = re.compile(r"^[0-9]+$")


def padded_version_string(value: Json) -> str:
    """Version string made comparable as text (``1.2.10`` sorts after ``1.2.9``)."""
    if _is_number(value):
        value = js_number_to_string(value)
    if not value or not isinstance(value, str):
        value = "0"
    parts = _VERSION_SPLIT.split(_VERSION_STRIP.sub("", value))
    if len(parts) == 3:
        parts.append("~")
    return "-".join(p.rjust(5, " ") if _DIGITS.match(p) else p for p in parts)


@lru_cache(maxsize=512)
def _regex(pattern: str, insensitive: bool) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern, re.IGNORECASE if insensitive else 0)
    except re.error:
        return None


def _compare_op(actual: Json, expected: Json, accept: tuple[int, ...]) -> bool:
    result = _js_compare(actual, expected)
    return result is not None and result in accept


def _eval_operator(op: str, actual: Json, expected: Json, groups: SavedGroups) -> bool:
    if op == "$eq":
        return _strict_equal(actual, expected)
    if op == "$ne":
        return not _strict_equal(actual, expected)
    if op == "$lt":
        return _compare_op(actual, expected, (-1,))
    if op == "$lte":
        return _compare_op(actual, expected, (-1, 0))
    if op == "$gt":
        return _compare_op(actual, expected, (1,))
    if op == "$gte":
        return _compare_op(actual, expected, (0, 1))
    if op in ("$veq", "$vne", "$vgt", "$vgte", "$vlt", "$vlte"):
        a, b = padded_version_string(actual), padded_version_string(expected)
        return {
            "$veq": a == b,
            "$vne": a != b,
            "$vgt": a > b,
            "$vgte": a >= b,
            "$vlt": a < b,
            "$vlte": a <= b,
        }[op]
    if op == "$exists":
        return actual is not None if _truthy(expected) else actual is None
    if op in ("$in", "$ini"):
        return isinstance(expected, list) and _is_in(actual, expected, op == "$ini")
    if op in ("$nin", "$nini"):
        return isinstance(expected, list) and not _is_in(actual, expected, op == "$nini")
    if op == "$inGroup":
        return _is_in(actual, groups.get(str(expected), []))
    if op == "$notInGroup":
        return not _is_in(actual, groups.get(str(expected), []))
    if op == "$not":
        return not _eval_value(expected, actual, groups)
    if op == "$size":
        return isinstance(actual, list) and _eval_value(expected, len(actual), groups)
    if op == "$elemMatch":
        return _elem_match(actual, expected, groups)
    if op in ("$all", "$alli"):
        return _is_in_all(actual, expected, groups, op == "$alli")
    if op in ("$regex", "$regexi"):
        rx = _regex(js_to_string(expected), op == "$regexi")
        return rx is not None and rx.search(js_to_string(actual)) is not None
    if op == "$type":
        return bool(get_type(actual) == expected)
    return False  # unknown operators never match


# --------------------------------------------------------------------------- bucketing
def fnv1a32(text: str) -> int:
    """32-bit FNV-1a over UTF-16 code units, as the JavaScript SDK computes it."""
    h = 0x811C9DC5
    data = text.encode("utf-16-le")
    for i in range(0, len(data), 2):
        h ^= data[i] | (data[i + 1] << 8)
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def bucket_hash(seed: str, value: str, version: int) -> float | None:
    """Map (seed, value) to [0, 1): version 2 is the current scheme, 1 the legacy one."""
    if version == 2:
        return (fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    return None


# --------------------------------------------------------------------------- compilation
Predicate = Callable[[Json], bool]


def _getter(path: str) -> Callable[[Json], Json]:
    if "." in path:

        def get_dotted(attrs: Json) -> Json:
            return get_path(attrs, path)

        return get_dotted

    def get(attrs: Json) -> Json:
        return attrs.get(path) if isinstance(attrs, dict) else None

    return get


def _compile_operator(op: str, expected: Json, groups: SavedGroups) -> Callable[[Json], bool]:
    """Fast paths for the common operators; everything else goes to the interpreter."""
    if op in ("$in", "$nin") and isinstance(expected, list) and expected and all(isinstance(e, str) for e in expected):
        members = frozenset(expected)
        negate = op == "$nin"

        def member(v: Json) -> bool:
            if type(v) is str:
                return (v in members) != negate
            return _eval_operator(op, v, expected, groups)

        return member
    if (
        op in ("$gt", "$gte", "$lt", "$lte")
        and _is_number(expected)
        and not (isinstance(expected, float) and math.isnan(expected))
    ):
        bound = expected
        cmp: Callable[[Json], bool] = {
            "$gt": lambda v: v > bound,
            "$gte": lambda v: v >= bound,
            "$lt": lambda v: v < bound,
            "$lte": lambda v: v <= bound,
        }[op]

        def compare(v: Json) -> bool:
            if type(v) is int or type(v) is float:
                return bool(cmp(v))
            return _eval_operator(op, v, expected, groups)

        return compare
    if op in ("$eq", "$ne") and isinstance(expected, str):
        negate = op == "$ne"
        return lambda v: (type(v) is str and v == expected) != negate
    return lambda v: _eval_operator(op, v, expected, groups)


def _compile_value(condition: Json, groups: SavedGroups) -> Callable[[Json], bool]:
    if isinstance(condition, str):
        return lambda v: (v == condition) if type(v) is str else js_to_string(v) == condition
    if isinstance(condition, bool):
        return lambda v: v is condition if type(v) is bool else (v is not None and _truthy(v) == condition)
    if is_operator_object(condition):
        checks = [_compile_operator(op, expected, groups) for op, expected in condition.items()]
        if len(checks) == 1:
            return checks[0]
        return lambda v: all(check(v) for check in checks)
    return lambda v: _eval_value(condition, v, groups)


def _compile_logical(op: str, subs: list[Predicate]) -> Predicate:
    def any_of(attrs: Json) -> bool:
        return not subs or any(p(attrs) for p in subs)

    if op == "$or":
        return any_of
    if op == "$nor":
        return lambda attrs: not any_of(attrs)
    return lambda attrs: all(p(attrs) for p in subs)


def _interpreted(condition: Json, groups: SavedGroups) -> Predicate:
    return lambda attrs: eval_condition(attrs, condition, groups)


def _negate(sub: Predicate) -> Predicate:
    return lambda attrs: not sub(attrs)


def _attribute_test(get: Callable[[Json], Json], test: Callable[[Json], bool]) -> Predicate:
    return lambda attrs: test(get(attrs))


def compile_condition(condition: Json, saved_groups: SavedGroups | None = None) -> Predicate:
    """Compile a condition once into a predicate equivalent to :func:`eval_condition`.

    Bundles compile their conditions at load time, so a decision runs closures, not a
    tree walk; the conformance cases run against both forms.
    """
    groups = saved_groups if saved_groups is not None else _EMPTY_GROUPS
    if not isinstance(condition, dict):
        return lambda attrs: False
    parts: list[Predicate] = []
    for key, value in condition.items():
        if key in ("$or", "$nor", "$and") and isinstance(value, list):
            parts.append(_compile_logical(key, [compile_condition(c, groups) for c in value]))
        elif key in ("$or", "$nor", "$and"):
            parts.append(_interpreted({key: value}, groups))
        elif key == "$not":
            parts.append(_negate(compile_condition(value, groups)))
        else:
            parts.append(_attribute_test(_getter(key), _compile_value(value, groups)))
    if len(parts) == 1:
        return parts[0]
    return lambda attrs: all(p(attrs) for p in parts)
