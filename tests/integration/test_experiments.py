"""Experiments end to end with the real components: a bundle with a personalization
holdout goes live through the hub; visitors consent and see pages on the edge, which
records their arm; some buy; the hub's results count every visitor in the arm the edge
put them in and every purchase after exposure, over the API, the HTML report and the
CLI; bad requests are refused with a reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from models.experiments import GlobalHoldout
from tests.conftest import DEFAULT_TEMPLATES, AgentFactory, HubFactory, Origin, TrainedBundle
from tests.integration.experiment_helpers import buy, consenting_visitor, repack
from tests.integration.helpers import fetch, wait_for
from tests.integration.ingest_helpers import stats
from tests.integration.test_bundle_sync import health, p13n

HOLDOUT = GlobalHoldout(0.5, "site-holdout-test")


def test_holdout_results_count_what_the_edge_decided(
    nats_server: str,
    origin: Origin,
    trained_bundle: TrainedBundle,
    start_agent: AgentFactory,
    start_hub: HubFactory,
    tmp_path: Path,
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATES, templates)
    (templates / "holdout.json").write_text(json.dumps({"share": HOLDOUT.share, "seed": HOLDOUT.seed}))
    key = str(trained_bundle.public_key)
    bundle = repack(trained_bundle, templates, tmp_path / "out")
    hub = start_hub(nats_server, BUNDLE_PUBLIC_KEY=key)
    edge = start_agent(origin.url, NATS_URL=nats_server, BUNDLE_PUBLIC_KEY=key, ID="edge-exp")
    assert p13n(hub, "push", bundle["bundle"]).returncode == 0
    wait_for(lambda: health(edge.url)["model_version"] == bundle["version"], timeout_s=60)

    arms: dict[str, list[str]] = {"holdout": [], "personalized": []}
    buyers = {"holdout": 0, "personalized": 0}
    for n in range(60):
        cookies, visitor = consenting_visitor(edge)
        arm = "holdout" if HOLDOUT.holds(visitor) else "personalized"
        arms[arm].append(visitor)
        for _ in range(2):  # two pages: one arm exposure per page, one unit at the hub
            decided = json.loads(fetch(edge.url + "/_p13n/decide?slots=hero,recs&page=/", {"cookie": cookies}).body)
            assert (decided["slots"]["hero"]["reason"] == "holdout") == (arm == "holdout")
        if n % (2 if arm == "personalized" else 4) == 0:
            buyers[arm] += 1
            buy(edge, cookies, 20.0)
    assert arms["holdout"] and arms["personalized"]

    def arrived() -> bool:
        listed = json.loads(fetch(hub.url + "/v1/experiments", hub.auth("analyst")).body)["experiments"]
        found = {e["name"]: e for e in listed}
        site = found.get(HOLDOUT.seed)
        return (
            site is not None and sum(site["exposures"].values()) >= 120 and stats(hub)["accepted"] >= 120 + sum(buyers.values())
        )

    wait_for(arrived, timeout_s=60)
    listed = {e["name"]: e for e in json.loads(fetch(hub.url + "/v1/experiments", hub.auth("analyst")).body)["experiments"]}
    assert listed[HOLDOUT.seed]["design"] == "personalization holdout"
    assert listed[HOLDOUT.seed]["exposures"] == {arm: 2 * len(v) for arm, v in arms.items() if v}

    reply = fetch(hub.url + f"/v1/experiments/{HOLDOUT.seed}/results?metrics=purchase,revenue", hub.auth("analyst"))
    assert reply.status == 200, reply.body
    result = json.loads(reply.body)
    assert result["design"]["control"] == "holdout" and result["design"]["weights"] == {"holdout": 0.5, "personalized": 0.5}
    for arm, visitors in arms.items():
        entry = result["variants"][arm]
        assert entry["users"] == len(visitors)
        assert round(entry["metrics"]["purchase"]["mean"] * len(visitors), 6) == buyers[arm]
        assert round(entry["metrics"]["revenue"]["mean"] * len(visitors), 6) == 2000 * buyers[arm]  # minor units
    lift = result["variants"]["personalized"]["metrics"]["purchase"]
    expected = (buyers["personalized"] / len(arms["personalized"])) / (buyers["holdout"] / len(arms["holdout"])) - 1
    assert abs(lift["lift"] - expected) < 1e-9 and lift["ci"][0] < lift["lift"] < lift["ci"][1]

    html = fetch(hub.url + f"/v1/experiments/{HOLDOUT.seed}/results.html", hub.auth("analyst"))
    assert html.status == 200 and "<svg" in html.text and "personalized" in html.text
    table = p13n(hub, "experiments", "results", HOLDOUT.seed, "--metrics", "purchase", role="analyst")
    assert table.returncode == 0, table.stderr
    for arm, visitors in arms.items():
        assert f"  {arm:<16}{len(visitors):>9}" in table.stdout, table.stdout
    listing = p13n(hub, "experiments", "list", role="analyst")
    assert listing.returncode == 0 and HOLDOUT.seed in listing.stdout

    # bad requests: a reason each, and roles as the matrix says
    for path, status, reason in (
        ("/v1/experiments/bad%20name/results", 400, "bad_name"),
        (f"/v1/experiments/{HOLDOUT.seed}/results?metrics=nope", 400, "bad_metrics"),
        (f"/v1/experiments/{HOLDOUT.seed}/results?method=bayes", 400, "bad_query"),
        (f"/v1/experiments/{HOLDOUT.seed}/results?alpha=2", 400, "bad_query"),
        (f"/v1/experiments/{HOLDOUT.seed}/results?control=ghost", 400, "bad_query"),
        ("/v1/experiments/never-ran/results", 404, "not_found"),
    ):
        bad = fetch(hub.url + path, hub.auth("analyst"))
        assert bad.status == status and json.loads(bad.body)["error"]["reason"] == reason, (path, bad.body)
    assert fetch(hub.url + "/v1/experiments", hub.auth("viewer")).status == 403
    failed = p13n(hub, "experiments", "results", "never-ran", role="analyst")
    assert failed.returncode == 1 and "not_found" in failed.stderr and "Traceback" not in failed.stderr
