"""Experiment analysis: statistics against answers computed by hand, and the SQL over a
real warehouse (exposures, stitching, windows, CUPED covariates, sample-ratio check)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from hub.experiments.analysis import Design, design_of, results
from hub.experiments.metrics import DEFAULT_METRICS, Metric, MetricError, parse_metrics
from hub.experiments.stats import Aggregate, compare, holm, srm_p_value
from tests.unit.test_train_from_hub import ev, store_with


def test_two_proportions_by_hand() -> None:
    # 1000 users each; 100 vs 120 conversions: lift 20 %
    a, b = Aggregate(1000, 100, 100, True), Aggregate(1000, 120, 120, True)
    r = compare(a, b)
    var = 0.12 * 0.88 / (0.1**2 * 1000) + 0.1 * 0.9 * 0.12**2 / (0.1**4 * 1000)  # delta method
    assert r.lift == pytest.approx(0.2) and r.stddev == pytest.approx(math.sqrt(var))
    dof = (0.1056 / 1000 + 0.09 / 1000) ** 2 / (0.1056**2 / (1000**2 * 999) + 0.09**2 / (1000**2 * 999))
    assert r.dof == pytest.approx(dof)
    # ~1990 dof: the t quantile is 1.96115…, and the t-test is within 5e-4 of the z-test
    t = 0.2 / math.sqrt(var)  # 1.3041
    assert r.ci[0] == pytest.approx(0.2 - 1.961151 * math.sqrt(var), abs=1e-5)
    assert r.p_value == pytest.approx(math.erfc(t / math.sqrt(2)), abs=5e-4)  # 0.192
    assert r.chance_to_win == pytest.approx(0.5 * math.erfc(-t / math.sqrt(2)))  # Φ(t), flat prior


def test_means_cuped_sequential_and_edge_cases() -> None:
    a = Aggregate(4, 10, 30, False)  # values 1, 2, 3, 4: mean 2.5, var 5/3
    b = Aggregate(4, 14, 54, False)  # values 2, 3, 4, 5: mean 3.5, var 5/3
    r = compare(a, b)
    assert r.lift == pytest.approx(0.4)
    assert r.stddev**2 == pytest.approx((5 / 3) / (2.5**2 * 4) + (5 / 3) * 3.5**2 / (2.5**4 * 4))
    # CUPED: covariates 0, 2, 1, 3 (control) and 1, 0, 3, 2 (variation); pooled θ = 1 / (10/7) = 0.7
    cuped = compare(Aggregate(4, 10, 30, False, 6, 14, 19), Aggregate(4, 14, 54, False, 6, 14, 24), cuped=True)
    var_a = 5 / 3 + 0.49 * 5 / 3 - 2 * 0.7 * 4 / 3  # var y + θ² var x − 2θ cov
    var_b = 5 / 3 + 0.49 * 5 / 3 - 2 * 0.7 * (24 - 14 * 6 / 4) / 3
    assert cuped.lift == pytest.approx(0.4)  # equal pre means: the same lift
    assert cuped.stddev**2 == pytest.approx(var_b / (2.5**2 * 4) + var_a * 3.5**2 / (2.5**4 * 4))
    assert cuped.stddev < r.stddev
    seq = compare(a, b, sequential_n=5000)
    assert seq.ci[1] - seq.ci[0] > r.ci[1] - r.ci[0]  # valid under peeking: wider
    assert compare(Aggregate(1, 1, 1), b).error and compare(Aggregate(10, 0, 0, True), b).error


def test_srm_and_holm_by_hand() -> None:
    # 520 vs 480 against 50/50: χ² = 1.6, one dof
    assert srm_p_value([520, 480], [0.5, 0.5]) == pytest.approx(math.erfc(math.sqrt(1.6 / 2)), rel=1e-9)
    assert srm_p_value([0, 0], [1, 1]) == 1.0
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_metrics_are_validated_with_a_reason() -> None:
    assert parse_metrics({"metrics": [{"name": "buy", "kind": "conversion", "event": "purchase"}]})[0].window_hours == 72
    for bad, says in (
        ([], "non-empty"),
        ([{"name": "Buy", "kind": "conversion", "event": "purchase"}], "name"),
        ([{"name": "b", "kind": "ratio", "event": "purchase"}], "kind"),
        ([{"name": "b", "kind": "count", "event": "purchase", "window_hours": 0}], "positive"),
        ([{"name": "b", "kind": "count", "event": "purchase", "extra": 1}], "unknown field"),
        ([{"name": "b", "kind": "count", "event": "x"}, {"name": "b", "kind": "count", "event": "y"}], "unique"),
    ):
        with pytest.raises(MetricError, match=says):
            parse_metrics(bad)


def test_design_from_the_content_bundle() -> None:
    content = {
        "holdout": {"share": 0.1, "seed": "site"},
        "slots": {
            "banner": {
                "kind": "experiment",
                "seed": "b-1",
                "holdout": 0.2,
                "variants": [{"id": "calm"}, {"id": "bold", "weight": 3}],
            },
            "hero": {"kind": "experiment", "variants": [{"id": "x"}, {"id": "y"}]},
        },
    }
    assert design_of("site", content) == Design("holdout", {"holdout": 0.1, "personalized": 0.9}, "personalization holdout")
    banner = design_of("b-1", content)
    assert banner.control == "holdout" and banner.weights == pytest.approx({"holdout": 0.2, "calm": 0.2, "bold": 0.6})
    assert design_of("hero", content).control == "x"
    assert design_of("gone", content) == Design() == design_of("site", None)


def test_results_from_the_warehouse_stitch_visitors_and_respect_windows(tmp_path: Path) -> None:
    events = []
    for n in range(40):
        v = f"visitorExp{n:012d}"
        arm = "holdout" if n < 20 else "personalized"
        events.append(ev("exposure", v, 2.0, experiment="site", variant=arm))
        events.append(ev("exposure", v, 1.9, experiment="site", variant=arm))  # repeats count once
        buys = (n % 4 == 0) if arm == "holdout" else (n % 2 == 0)  # 5 of 20 vs 10 of 20
        if buys:
            events.append(ev("purchase", v, 1.5, order_id=f"o{n}", items=[{"item_id": "i1", "quantity": 1}],
                             total={"amount": 10.0, "currency": "EUR"}))  # fmt: skip
        events.append(ev("page_view", v, 2.5, url="https://s.example/"))  # before exposure: CUPED only
    # one visitor on two devices, linked by an identify: stitched into one unit; it saw both
    events.append(ev("exposure", "visitorExpPhoneA000001", 2.0, experiment="site", variant="holdout"))
    events.append(ev("exposure", "visitorExpLaptopB00001", 2.0, experiment="site", variant="personalized"))
    for device in ("visitorExpPhoneA000001", "visitorExpLaptopB00001"):
        events.append(ev("identify", device, 1.0, user_id="user-two-devices"))
    # a purchase after the window does not count
    events.append(ev("purchase", "visitorExp000000000001", 0.0, order_id="late", items=[{"item_id": "i1", "quantity": 1}],
                     total={"amount": 10.0, "currency": "EUR"}))  # fmt: skip
    store = store_with(tmp_path, *events)
    try:
        assert [(s.name, s.exposures) for s in store.experiments()] == [("site", {"holdout": 41, "personalized": 41})]
        metrics = (
            Metric("purchase", "conversion", "purchase", 24.0),
            Metric("revenue", "revenue", "purchase", 24.0),
            Metric("views", "count", "page_view", 24.0, guardrail=True, cuped_days=2.0),
        )
        data = store.experiment("site", metrics)
        assert data.users == {"holdout": 20, "personalized": 20} and data.multiple_exposures == 1
        bought = data.metrics["purchase"]
        assert (bought["holdout"].total, bought["personalized"].total) == (5, 10)
        assert data.metrics["revenue"]["personalized"].total == 10 * 1000  # minor units
        views = data.metrics["views"]["holdout"]
        assert views.total == 0 and views.pre_total == 20  # the page views came before exposure
        out = results(data, metrics, Design("holdout", {"holdout": 0.5, "personalized": 0.5}))
        purchase = out["variants"]["personalized"]["metrics"]["purchase"]
        assert purchase["lift"] == pytest.approx(1.0) and out["variants"]["holdout"]["control"]
        assert purchase["p_value"] == pytest.approx(compare(bought["holdout"], bought["personalized"]).p_value)
        assert "p_value_holm" in purchase and not out["srm"]["flagged"]
        assert any("more than one variant" in n for n in out["notes"])
    finally:
        store.close()


def test_metric_events_reach_their_stitched_unit_whichever_id_they_carry(tmp_path: Path) -> None:
    """Each way an event can belong to a unit: the visitor id alone, a user id on the
    event, a second device linked to the same user, an exposure that named the user."""
    buy = {"items": [{"item_id": "i1", "quantity": 1}], "total": {"amount": 2.0, "currency": "EUR"}}
    store = store_with(
        tmp_path,
        ev("exposure", "visitorStitchAnon00001", 2.0, experiment="st", variant="a"),
        ev("purchase", "visitorStitchAnon00001", 1.9, order_id="o1", **buy),  # the visitor alone
        ev("exposure", "visitorStitchPhone0001", 2.0, experiment="st", variant="b"),
        ev("identify", "visitorStitchPhone0001", 1.95, user_id="user-stitch"),
        ev("identify", "visitorStitchLaptop001", 1.95, user_id="user-stitch"),
        ev("purchase", "visitorStitchLaptop001", 1.9, order_id="o2", **buy),  # a linked device, never exposed
        ev("purchase", "visitorStitchOther001", 1.8, user_id="user-stitch", order_id="o3", **buy),  # the user id
        ev("exposure", "visitorStitchNamed0001", 2.0, experiment="st", variant="b", user_id="user-named"),
        ev("purchase", "visitorStitchNamed0002", 1.9, user_id="user-named", order_id="o4", **buy),
        ev("purchase", "visitorStitchNever0001", 1.9, order_id="o5", **buy),  # not in the experiment
    )
    try:
        metrics = (Metric("buyers", "conversion", "purchase", 48.0), Metric("revenue", "revenue", "purchase", 48.0))
        data = store.experiment("st", metrics)
        assert data.users == {"a": 1, "b": 2} and data.multiple_exposures == 0
        assert (data.metrics["buyers"]["a"].total, data.metrics["buyers"]["b"].total) == (1, 2)
        # user-stitch bought twice (linked laptop, user id), user-named once: 2 + 2 + 2 EUR
        assert data.metrics["revenue"]["b"].total == 3 * 200 and data.metrics["revenue"]["b"].sum_squares == 400**2 + 200**2
    finally:
        store.close()


def test_a_skewed_split_is_flagged_and_explained() -> None:
    from hub.storage.interface import ExperimentData

    data = ExperimentData(
        "e", {"a": 5000, "b": 4600}, metrics={"m": {"a": Aggregate(5000, 500, 500, True), "b": Aggregate(4600, 460, 460, True)}}
    )
    out = results(data, (Metric("m", "conversion", "x"),), Design("a", {"a": 0.5, "b": 0.5}))
    assert out["srm"]["flagged"] and "sample ratio mismatch" in out["notes"][0]
    assert DEFAULT_METRICS[0].name == "purchase"


def test_a_slot_metric_counts_only_that_slots_clicks(tmp_path: Path) -> None:
    v = "visitorSlotClicks000001"
    store = store_with(
        tmp_path,
        ev("exposure", v, 2.0, experiment="recs-test", variant="a"),
        ev("click", v, 1.9, item_id="i1", context={"slot": "recs"}),
        ev("click", v, 1.8, item_id="i2", context={"slot": "hero"}),
        ev("click", v, 1.7, item_id="i3"),
        ev("exposure", "visitorSlotClicks000002", 2.0, experiment="recs-test", variant="b"),
    )
    try:
        metrics = (Metric("recs_clicks", "count", "click", 24.0, slot="recs"), Metric("clicks", "count", "click", 24.0))
        data = store.experiment("recs-test", metrics)
        assert data.metrics["recs_clicks"]["a"].total == 1 and data.metrics["clicks"]["a"].total == 3
        assert data.metrics["clicks"]["b"].total == 0 and data.users == {"a": 1, "b": 1}
    finally:
        store.close()


def test_exposures_are_exported_and_erased_with_the_subject(tmp_path: Path) -> None:
    from hub.pii import PiiCipher
    from tests.unit.test_train_from_hub import KEY

    kept, gone = "visitorExpKept00000001", "visitorExpGone00000001"
    store = store_with(
        tmp_path,
        ev("exposure", kept, 2.0, experiment="e1", variant="a"),
        ev("exposure", gone, 2.0, experiment="e1", variant="b"),
        ev("exposure", gone, 1.0, experiment="e1", variant="b"),
    )
    try:
        subject = store.resolve_subject(gone, KEY)
        exported = store.export_subject(subject, PiiCipher.from_settings("", "", tmp_path))
        assert [(e["experiment"], e["variant"], e["count"]) for e in exported["exposures"]] == [("e1", "b", 2)]
        counts = store.erase_subject(subject)
        assert counts["marts.exposures"] == 1
        assert store.experiment("e1", ()).users == {"a": 1}
        marts = (tmp_path / "marts.sqlite").read_bytes()
        assert gone.encode() not in marts and kept.encode() in marts
    finally:
        store.close()


def test_a_control_nobody_reached_is_said_and_counts_in_the_ratio_check() -> None:
    from hub.storage.interface import ExperimentData

    data = ExperimentData(
        "e",
        {"calm": 500, "bold": 500},
        metrics={"m": {"calm": Aggregate(500, 50, 50, True), "bold": Aggregate(500, 60, 60, True)}},
    )
    design = Design("holdout", {"holdout": 0.1, "calm": 0.45, "bold": 0.45}, "slot banner")
    out = results(data, (Metric("m", "conversion", "x"),), design)
    assert any("control 'holdout' has no users" in n for n in out["notes"])
    assert {v["control"] for v in out["variants"].values()} == {False}
    assert out["variants"]["bold"]["metrics"]["m"]["error"] == "no users in the control"
    assert out["srm"]["flagged"]  # a tenth of the visitors should be in the holdout and none are
    assert "no users in the control" in __import__("hub.experiments.report", fromlist=["render_html"]).render_html(out)
