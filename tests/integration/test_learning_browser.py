"""The loop as a visitor lives it, in Chromium: the shop's consent banner, a few product
pages, and seconds later the edge runs a bundle the hub learned from that visit, which
recommends on the next page."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from tests.conftest import AgentFactory, HubFactory, Origin, TrainedBundle
from tests.integration.helpers import fetch, session_model, wait_for
from tests.integration.test_bundle_sync import health, p13n

BROWSED = ("sh01", "sh02", "sh03")


def test_a_consenting_visit_is_learned_and_shipped_to_the_edge(
    browser: object,
    nats_server: str,
    origin: Origin,
    trained_bundle: TrainedBundle,
    start_agent: AgentFactory,
    start_hub: HubFactory,
) -> None:
    key = str(trained_bundle.public_key)
    hub = start_hub(
        nats_server,
        BUNDLE_PUBLIC_KEY=key,
        TRAINING_KEY=str(Path(key).with_name("bundle-signing.key")),
        TRAINING_INTERVAL_S="2",
        TRAINING_TUNE="false",
        TRAINING_MIN_SUBJECTS="1",
        TRAINING_MIN_INTERACTIONS="3",
        TRAINING_MIN_ITEMS="3",
    )
    edge = start_agent(origin.url, NATS_URL=nats_server, BUNDLE_PUBLIC_KEY=key, ID="edge-learn", DEFAULT_CONSENT="necessary")
    assert p13n(hub, "push", str(trained_bundle.path)).returncode == 0
    wait_for(lambda: health(edge.url)["model_version"] == 1)

    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(edge.url + "/")
    page.wait_for_function("window.p13n !== undefined")
    page.click("#p13n-consent [data-consent=all]")
    page.wait_for_function("document.cookie.indexOf('p13n_consent=') >= 0")
    for item in BROWSED:
        page.goto(f"{edge.url}/p/{item}")
        page.wait_for_function("window.p13n !== undefined")
        page.evaluate("window.p13n.flush()")

    runs: list[dict[str, object]] = []

    def shipped() -> bool:
        nonlocal runs
        runs = json.loads(fetch(hub.url + "/v1/training/runs", hub.auth("operator")).body)["runs"]
        return any(r["status"] == "passed" and r["pushed"] for r in runs)

    wait_for(shipped, timeout_s=120)
    run = next(r for r in runs if r["status"] == "passed")
    assert run["trigger"] == "schedule" and run["summary"]["subjects"] == 1  # this visitor, and only them
    assert "to compare" in str(run["reason"])  # one visitor: nothing to compare on a holdout
    # runs go on every 2 s while events arrive: this one's version, or a later one, is live
    wait_for(lambda: int(health(edge.url)["model_version"] or 0) >= int(run["version"]), timeout_s=60)
    items = json.loads(
        subprocess.run(
            ["tar", "-xOf", str(hub.data_dir / "training" / f"bundle-v{run['version']}.tar"), "items.json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert set(BROWSED) <= set(items["ids"])

    # the next page: recommendations from the new bundle (a page decided while the edge
    # swaps bundles, or too slowly, shows the slot's fallback: fail-open; load it again)
    def recommended() -> bool:
        page.goto(edge.url + "/")
        return bool(page.locator("[data-slot=recs] li").count() == 4)

    wait_for(recommended, timeout_s=30)
    decided = context.request.get(edge.url + "/_p13n/decide?slots=recs&page=/").json()  # as this visitor
    assert decided["model_version"] >= run["version"]
    live = hub.data_dir / "training" / f"bundle-v{decided['model_version']}.tar"
    assert decided["slots"]["recs"]["reason"] == "recommend"
    assert decided["slots"]["recs"]["detail"] == session_model(live)  # the model training chose
    assert not page.is_visible("#p13n-consent")  # the choice was made
    visitor = next(c["value"] for c in context.cookies() if c["name"] == "p13n_id")
    context.close()

    # the visitor asks to be erased: that reaches the hub's own training outputs too
    factors = hub.data_dir / "training" / f"user-factors-v{run['version']}.npz"
    with np.load(factors, allow_pickle=False) as data:
        assert visitor in set(data["ids"].tolist())
    erased = fetch(hub.url + f"/v1/subjects/{visitor}", hub.auth("privacy_officer"), method="DELETE")
    assert erased.status == 202 and json.loads(erased.body)["hub"]["user_factors"] >= 1, erased.text  # every run's file
    with np.load(factors, allow_pickle=False) as data:
        assert visitor not in set(data["ids"].tolist())
