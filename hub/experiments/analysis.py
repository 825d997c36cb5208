"""An experiment's results from what the store aggregated (sans-IO).

The **design** says which variant is the control and what share of exposed visitors
each variant should get (for the sample-ratio check). It comes from the live content
bundle: a slot experiment's variants (weights normalised, the per-experiment holdout
share in front, and the holdout as control when there is one, else the first
variant), or the site-wide personalization holdout (``holdout`` against
``personalized``). An experiment the bundle no longer defines is analysed with equal
expected shares and the control given (or ``holdout``/``control`` when present, else
the first variant by name).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub.experiments.metrics import Metric
from hub.experiments.stats import SRM_THRESHOLD, compare, holm, srm_p_value
from hub.storage.interface import ExperimentData

METHODS = ("fixed", "sequential")


@dataclass(frozen=True)
class Design:
    control: str = ""
    #: variant → expected share of exposed visitors (empty: unknown, equal shares)
    weights: Mapping[str, float] = field(default_factory=dict)
    source: str = "exposures"


def design_of(name: str, content: Mapping[str, Any] | None) -> Design:
    """The experiment's design from a content bundle document (``content.json``)."""
    if not content:
        return Design()
    holdout = content.get("holdout") or {}
    if holdout.get("share") and holdout.get("seed", "p13n-personalization-holdout") == name:
        share = float(holdout["share"])
        return Design("holdout", {"holdout": share, "personalized": 1.0 - share}, "personalization holdout")
    for slot_name, spec in (content.get("slots") or {}).items():
        if not isinstance(spec, dict) or spec.get("kind") != "experiment" or spec.get("seed", slot_name) != name:
            continue
        variants = [v for v in spec.get("variants", []) if isinstance(v, dict) and "id" in v]
        total = sum(float(v.get("weight", 1.0)) for v in variants) or 1.0
        held = float(spec.get("holdout", 0.0))
        weights = {str(v["id"]): (1.0 - held) * float(v.get("weight", 1.0)) / total for v in variants}
        if held > 0:
            weights = {"holdout": held, **weights}
        control = "holdout" if held > 0 else (str(variants[0]["id"]) if variants else "")
        return Design(control, weights, f"slot {slot_name}")
    return Design()


def results(
    data: ExperimentData,
    metrics: Sequence[Metric],
    design: Design,
    control: str = "",
    alpha: float = 0.05,
    method: str = "fixed",
    sequential_n: float = 5000.0,
    cuped: bool = True,
) -> dict[str, Any]:
    """Per variant and metric: users, mean, and against the control the relative lift,
    its interval, p-value and chance to win; the sample-ratio check; notes."""
    variants = sorted(data.users)
    chosen = control or design.control or next((v for v in ("holdout", "control") if v in data.users), "")
    if not chosen and variants:
        chosen = variants[0]
    notes: list[str] = []
    if data.multiple_exposures:
        notes.append(f"{data.multiple_exposures} visitors saw more than one variant and are left out")
    order = [chosen, *[v for v in variants if v != chosen]] if chosen in data.users else variants
    if chosen not in data.users:
        notes.append(f"the control {chosen!r} has no users yet: nothing to compare with")
    unexpected = [v for v in order if design.weights and v not in design.weights]
    if unexpected:
        notes.append(f"variant(s) {unexpected} are not in the design ({design.source}): left out of the ratio check")
    # the ratio check covers every variant the design expects, those nobody reached too
    checked = {v: w for v, w in design.weights.items() if w > 0} if design.weights else dict.fromkeys(order, 1.0)
    observed = [data.users.get(v, 0) for v in checked]
    srm = srm_p_value(observed, list(checked.values())) if len(checked) > 1 else 1.0
    out_variants: dict[str, Any] = {}
    goal_tests: list[tuple[str, str]] = []
    for v in order:
        out_variants[v] = {"users": data.users[v], "control": v == chosen, "metrics": {}}
    for metric in metrics:
        by_variant = data.metrics.get(metric.name, {})
        base = by_variant.get(chosen)
        for v in order:
            agg = by_variant.get(v)
            entry: dict[str, Any] = {"mean": agg.mean if agg else 0.0, "users": agg.users if agg else 0}
            if v != chosen and (base is None or agg is None):
                entry["error"] = "no users in the control" if base is None else "no users"
            if v != chosen and base is not None and agg is not None:
                use_cuped = cuped and metric.cuped_days > 0
                found = compare(base, agg, alpha, sequential_n if method == "sequential" else 0.0, use_cuped)
                comparison = found.as_dict()
                comparison["cuped"] = use_cuped
                if metric.guardrail:
                    comparison["harm"] = found.p_value < alpha and found.lift < 0
                entry.update(comparison)
                if not metric.guardrail and "error" not in comparison:
                    goal_tests.append((v, metric.name))
            out_variants[v]["metrics"][metric.name] = entry
    adjusted = holm([out_variants[v]["metrics"][m]["p_value"] for v, m in goal_tests])
    for (v, m), p in zip(goal_tests, adjusted, strict=True):
        out_variants[v]["metrics"][m]["p_value_holm"] = p
    if srm < SRM_THRESHOLD:
        notes.append(
            f"sample ratio mismatch (p = {srm:.2g}): the users per variant differ from the design "
            f"{ {v: round(w, 4) for v, w in checked.items()} } more than chance allows. Look for a broken "
            "assignment, variants that fail to render (no exposure), bots, or a changed design before "
            "trusting these results"
        )
    return {
        "experiment": data.name,
        "design": {"control": chosen, "weights": checked, "source": design.source},
        "method": method,
        "alpha": alpha,
        **({"sequential_tuning": sequential_n} if method == "sequential" else {}),
        "first_exposure": data.first_exposure,
        "last_exposure": data.last_exposure,
        "srm": {"p_value": srm, "flagged": srm < SRM_THRESHOLD},
        "metrics": [m.as_dict() for m in metrics],
        "variants": out_variants,
        "multiple_testing": "Holm-adjusted p-values over every (variation, goal metric) pair; guardrails unadjusted",
        "notes": notes,
    }
