"""Rule evaluation: our interpreter, our compiled closures, and GrowthBook's Python SDK
(when installed) on the conformance cases and on typical slot conditions.

    python tests/bench/conditions.py

Last line: one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from models.targeting import compile_condition, eval_condition  # noqa: E402

CASES = REPO.parent / "shared" / "conformance" / "targeting-cases.json"
TYPICAL = [
    ({"device": "mobile"}, {"device": "mobile", "country": "US", "hour": 12}),
    ({"country": {"$in": ["DE", "AT", "CH"]}}, {"device": "desktop", "country": "AT", "hour": 9}),
    ({"hour": {"$gte": 22}}, {"device": "desktop", "country": "", "hour": 23}),
    ({"$or": [{"device": "tablet"}, {"segments": {"$elemMatch": {"$eq": "vip"}}}]}, {"device": "mobile", "segments": ["vip"]}),
]
N = 100_000


def per_call_us(fn, attrs) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    for _ in range(N):
        fn(attrs)
    return (time.perf_counter() - t) / N * 1e6


def main() -> int:
    cases = json.loads(CASES.read_text())["evalCondition"] if CASES.exists() else []
    result: dict[str, object] = {"bench": "conditions", "conformance_cases": len(cases)}
    result["ours_conformance_failures"] = sum(eval_condition(c[2], c[1], c[4] if len(c) > 4 else None) is not c[3] for c in cases)
    result["compiled_conformance_failures"] = sum(
        compile_condition(c[1], c[4] if len(c) > 4 else None)(c[2]) is not c[3] for c in cases
    )
    interp = [per_call_us(lambda a, c=c: eval_condition(a, c), a) for c, a in TYPICAL]
    comp = [per_call_us(compile_condition(c), a) for c, a in TYPICAL]
    result["interpreted_us"] = [round(x, 2) for x in interp]
    result["compiled_us"] = [round(x, 2) for x in comp]
    try:
        from growthbook.core import evalCondition

        result["growthbook_conformance_failures"] = sum(
            evalCondition(c[2], c[1], c[4] if len(c) > 4 else {}) is not c[3] for c in cases
        )
        result["growthbook_us"] = [round(per_call_us(lambda a, c=c: evalCondition(a, c), a), 2) for c, a in TYPICAL]
    except ImportError:
        result["growthbook"] = "not installed (pip install growthbook to compare)"
    print(f"interpreted {result['interpreted_us']} µs, compiled {result['compiled_us']} µs")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
