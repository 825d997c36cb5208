"""Our experiment statistics against GrowthBook's stats engine (``gbstats``) on the same
aggregated inputs: frequentist (fixed and sequential), Bayesian, CUPED and the
sample-ratio check agree within 1e-6.

gbstats pins numpy < 2 and pandas < 2, which the product's environment cannot take, so
it runs in a virtual environment of its own (made once, kept under the user's cache
directory) and answers over JSON: a real gbstats, not a copy of its formulas.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import venv
from pathlib import Path
from typing import Any

import pytest

from hub.experiments.stats import Aggregate, compare, srm_p_value

GBSTATS = "gbstats==0.8.0"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "p13n-tests" / GBSTATS.replace("==", "-")

RUNNER = r"""
import json, sys
from gbstats.models.statistics import ProportionStatistic, SampleMeanStatistic, RegressionAdjustedStatistic
from gbstats.frequentist.tests import TwoSidedTTest, SequentialTwoSidedTTest, FrequentistConfig, SequentialConfig
from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig
from gbstats.utils import check_srm

def stat(d):
    post = ProportionStatistic(n=d["users"], sum=d["total"]) if d["proportion"] else SampleMeanStatistic(n=d["users"], sum=d["total"], sum_squares=d["sum_squares"])
    if not d.get("cuped"):
        return post
    pre = ProportionStatistic(n=d["users"], sum=d["pre_total"]) if d["proportion"] else SampleMeanStatistic(n=d["users"], sum=d["pre_total"], sum_squares=d["pre_sum_squares"])
    return RegressionAdjustedStatistic(n=d["users"], post_statistic=post, pre_statistic=pre, post_pre_sum_of_products=d["cross"], theta=0)

out = []
for case in json.load(sys.stdin):
    if "srm" in case:
        out.append({"srm": check_srm(case["srm"]["users"], case["srm"]["weights"])})
        continue
    a, b = stat(case["a"]), stat(case["b"])
    fixed = TwoSidedTTest(a, b, FrequentistConfig(alpha=case["alpha"])).compute_result()
    a, b = stat(case["a"]), stat(case["b"])
    seq = SequentialTwoSidedTTest(a, b, SequentialConfig(alpha=case["alpha"], sequential_tuning_parameter=case["tuning"])).compute_result()
    a, b = stat(case["a"]), stat(case["b"])
    bayes = EffectBayesianABTest(a, b, EffectBayesianConfig(alpha=case["alpha"])).compute_result()
    out.append({
        "lift": fixed.expected, "ci": list(fixed.ci), "p": fixed.p_value, "sd": fixed.uplift.stddev,
        "seq_ci": list(seq.ci), "seq_p": seq.p_value,
        "ctw": bayes.chance_to_win, "cred": list(bayes.ci),
    })
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def gbstats_python() -> Path:
    python = CACHE / "bin" / "python"
    marker = CACHE / ".installed"
    if not marker.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(CACHE)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", GBSTATS],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        marker.write_text(GBSTATS)
    return python


def _aggregate(rnd: random.Random, proportion: bool, cuped: bool) -> dict[str, Any]:
    n = rnd.randint(50, 20_000)
    if proportion:
        total = rnd.randint(1, n - 1)
        pre = rnd.randint(1, n - 1) if cuped else 0
        # cross products of 0/1 values: at most min(total, pre) users converted in both periods
        cross = rnd.randint(max(0, total + pre - n), min(total, pre)) if cuped else 0
        return {
            "users": n,
            "total": total,
            "sum_squares": total,
            "proportion": True,
            "pre_total": pre,
            "pre_sum_squares": pre,
            "cross": cross,
            "cuped": cuped,
        }
    values = [rnd.expovariate(1 / 30) for _ in range(n)]
    pre_values = [v * rnd.uniform(0.3, 1.2) + rnd.gauss(0, 5) for v in values] if cuped else [0.0] * n
    return {
        "users": n,
        "total": sum(values),
        "sum_squares": sum(v * v for v in values),
        "proportion": False,
        "pre_total": sum(pre_values),
        "pre_sum_squares": sum(v * v for v in pre_values),
        "cross": sum(v * p for v, p in zip(values, pre_values, strict=True)),
        "cuped": cuped,
    }


def _ours(d: dict[str, Any]) -> Aggregate:
    return Aggregate(d["users"], d["total"], d["sum_squares"], d["proportion"], d["pre_total"], d["pre_sum_squares"], d["cross"])


def test_statistics_equal_gbstats_on_the_same_inputs(gbstats_python: Path) -> None:
    rnd = random.Random(20261205)
    cases: list[dict[str, Any]] = []
    for i in range(120):
        proportion, cuped = i % 2 == 0, i % 3 == 0
        cases.append(
            {
                "a": _aggregate(rnd, proportion, cuped),
                "b": _aggregate(rnd, proportion, cuped),
                "alpha": rnd.choice([0.05, 0.1, 0.01]),
                "tuning": rnd.choice([1000.0, 5000.0, 20000.0]),
            }
        )
    srm_cases = [
        {"srm": {"users": [rnd.randint(100, 10_000) for _ in range(k)], "weights": [rnd.uniform(0.2, 1.0) for _ in range(k)]}}
        for k in (2, 3, 4, 2, 3)
    ]
    done = subprocess.run(
        [str(gbstats_python), "-c", RUNNER], input=json.dumps(cases + srm_cases), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = json.loads(done.stdout)
    compared = 0
    for case, expected in zip(cases, theirs, strict=False):
        a, b = _ours(case["a"]), _ours(case["b"])
        fixed = compare(a, b, case["alpha"], cuped=case["a"]["cuped"])
        seq = compare(a, b, case["alpha"], sequential_n=case["tuning"], cuped=case["a"]["cuped"])
        if fixed.error:  # gbstats answers its uninformative default there
            assert expected["sd"] == 0 and expected["p"] == 1
            continue
        assert fixed.lift == pytest.approx(expected["lift"], abs=1e-6)
        assert fixed.stddev == pytest.approx(expected["sd"], abs=1e-6)
        assert list(fixed.ci) == pytest.approx(expected["ci"], abs=1e-6)
        assert fixed.p_value == pytest.approx(expected["p"], abs=1e-6)
        assert list(seq.ci) == pytest.approx(expected["seq_ci"], abs=1e-6)
        assert seq.p_value == pytest.approx(expected["seq_p"], abs=1e-6)
        assert fixed.chance_to_win == pytest.approx(expected["ctw"], abs=1e-6)
        assert list(fixed.credible) == pytest.approx(expected["cred"], abs=1e-6)
        compared += 1
    assert compared >= 100
    for case, expected in zip(srm_cases, theirs[len(cases) :], strict=True):
        assert srm_p_value(case["srm"]["users"], case["srm"]["weights"]) == pytest.approx(expected["srm"], abs=1e-9)
    print(f"gbstats parity: {compared} comparisons and {len(srm_cases)} ratio checks within 1e-6 ({GBSTATS})")
