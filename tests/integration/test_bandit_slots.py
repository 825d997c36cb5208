"""A bandit slot end to end with the real components: the bundle defines it, the edge
splits evenly until the hub has weights, visitors convert on one variant only, the
hub's bandit job recomputes and ships weights, and the edge then sends most new
visitors to the winner while the loser keeps its floor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.conftest import DEFAULT_TEMPLATES, AgentFactory, HubFactory, Origin, TrainedBundle
from tests.integration.experiment_helpers import buy, consenting_visitor, repack
from tests.integration.helpers import fetch, wait_for
from tests.integration.test_bundle_sync import health, p13n

SLOT = {
    "kind": "bandit",
    "seed": "deal-bandit",
    "metric": "purchase",
    "min_share": 0.1,
    "variants": [{"id": "calm", "fragment": "banner-calm"}, {"id": "bold", "fragment": "banner-bold"}],
}


def visit(edge: Any) -> tuple[str, str]:
    """A new consenting visitor's cookies and the deal slot's variant."""
    cookies, _ = consenting_visitor(edge)
    decided = json.loads(fetch(edge.url + "/_p13n/decide?slots=deal&page=/", {"cookie": cookies}).body)["slots"]["deal"]
    assert decided["reason"] == "bandit", decided
    return cookies, decided["detail"].split(":", 1)[1]


def test_a_bandit_moves_traffic_to_the_variant_that_converts(
    nats_server: str,
    origin: Origin,
    trained_bundle: TrainedBundle,
    start_agent: AgentFactory,
    start_hub: HubFactory,
    tmp_path: Path,
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATES, templates)
    slots = json.loads((templates / "slots.json").read_text())
    slots["deal"] = SLOT
    (templates / "slots.json").write_text(json.dumps(slots))
    key = str(trained_bundle.public_key)
    bundle = repack(trained_bundle, templates, tmp_path / "out")
    hub = start_hub(nats_server, BUNDLE_PUBLIC_KEY=key, BANDIT_INTERVAL_S="1")
    edge = start_agent(origin.url, NATS_URL=nats_server, BUNDLE_PUBLIC_KEY=key, ID="edge-bandit", BANDIT_POLL_S="0.2")
    assert p13n(hub, "push", bundle["bundle"]).returncode == 0
    wait_for(lambda: health(edge.url)["model_version"] == bundle["version"], timeout_s=60)
    assert health(edge.url)["bandits"] == {}  # nothing shipped yet: an even split

    first = [visit(edge) for _ in range(80)]
    shown = [variant for _, variant in first]
    assert 20 <= shown.count("bold") <= 60  # even, give or take chance
    for cookies, variant in first:
        if variant == "bold":
            buy(edge, cookies, 30.0)  # only the bold deal converts

    def settled() -> bool:
        # the purchases arrive over several weight updates: an update that saw only part of
        # them already leans to bold (a CI run saw calm at 0.10032); once all are in, bold
        # wins every posterior draw and calm sits exactly at its floor
        weights = health(edge.url)["bandits"].get("deal-bandit", {}).get("weights", {})
        return float(weights.get("bold", 0)) > 0.85 and abs(float(weights.get("calm", 1)) - 0.1) < 1e-9

    wait_for(settled, timeout_s=90)  # recomputed once the purchases arrived
    weights = health(edge.url)["bandits"]["deal-bandit"]["weights"]
    assert abs(weights["calm"] - 0.1) < 1e-9 and weights["bold"] > 0.85  # the loser keeps its floor (bold 100 %, calm 0 %)
    later = [visit(edge)[1] for _ in range(100)]
    assert later.count("bold") >= 80 and later.count("calm") >= 1, later.count("bold")
