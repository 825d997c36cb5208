"""Consented profiles flow hub → every edge; withdrawn consent purges them everywhere;
an edge resumes from the last revision it applied."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid

from tests.conftest import AgentFactory, HubFactory, Origin
from tests.integration.helpers import fetch, metric, wait_for
from tests.integration.ingest_helpers import post_events

VISITOR = "profilevisitor0000000001"


def profiles(agent_data_dir) -> list[tuple[str, dict[str, object]]]:  # type: ignore[no-untyped-def]
    db = sqlite3.connect(agent_data_dir / "edge.sqlite3")
    try:
        return [(s, json.loads(d)) for s, d in db.execute("SELECT subject, data FROM profiles")]
    finally:
        db.close()


def consent(categories: list[str]) -> dict[str, object]:
    return {"event_id": uuid.uuid4().hex, "type": "consent", "categories": categories}


def test_profiles_reach_every_edge_and_withdrawal_purges_them(
    nats_server: str, origin: Origin, start_hub: HubFactory, start_agent: AgentFactory
) -> None:
    hub = start_hub(nats_server, PROFILE_SYNC_S="0.3")
    collector = start_agent(origin.url, NATS_URL=nats_server, ID="collector", STATUS_INTERVAL_S="0.3")
    other = start_agent(origin.url, NATS_URL=nats_server, ID="other", STATUS_INTERVAL_S="0.3")
    cookie = {"Cookie": f"p13n_id={VISITOR}"}
    views = [{"event_id": uuid.uuid4().hex, "type": "page_view", "url": f"https://s/p/sh0{i}"} for i in (1, 2)]
    assert post_events(collector.url, [consent(["necessary", "analytics", "personalization"]), *views], cookie).status == 202
    # a visitor who never consented to personalization gets no profile
    assert (
        post_events(
            collector.url,
            [{"event_id": uuid.uuid4().hex, "type": "page_view", "url": "https://s/p/dr01"}],
            {"Cookie": "p13n_id=noconsentvisitor00000001"},
        ).status
        == 202
    )
    wait_for(lambda: len(profiles(other.data_dir)) == 1)
    ((subject, profile),) = profiles(other.data_dir)
    assert subject == VISITOR and profile["views"] == 2
    # each edge applies the revision on its own schedule: wait for the collector too
    wait_for(lambda: [s for s, _ in profiles(collector.data_dir)] == [VISITOR])
    # the publishing is one of the hub's named jobs, visible with the others
    jobs = {j["name"]: j for j in json.loads(fetch(hub.url + "/v1/jobs", hub.auth("viewer")).body)["jobs"]}
    assert set(jobs) == {
        "profiles",
        "erasure-resume",
        "erasure-acks",
        "retention",
        "bandits",
        "console-samples",
        "experiment-snapshots",
    }
    assert jobs["bandits"]["failures"] == 0  # no bandit slot in the content: nothing to compute, no error
    assert jobs["profiles"]["runs"] >= 1 and jobs["profiles"]["failures"] == 0 and jobs["profiles"]["last_success"]
    assert jobs["erasure-acks"]["kind"] == "follower" and jobs["erasure-acks"]["running"] is True
    assert jobs["retention"]["runs"] == 0 and jobs["retention"]["next_run"]  # first run one interval after start
    assert metric(fetch(hub.url + "/metrics", hub.auth("viewer")).text, "p13n_hub_job_runs_total", job_name="profiles") >= 1

    # the edge resumes where it was: a restart applies nothing old again
    other.stop()
    again = start_agent(origin.url, NATS_URL=nats_server, ID="other", DATA_DIR=str(other.data_dir), STATUS_INTERVAL_S="0.3")
    time.sleep(1.5)
    assert metric(fetch(again.url + "/_p13n/metrics").text, "p13n_edge_profiles_applied_total") == 0
    assert json.loads(fetch(again.url + "/_p13n/healthz").body)["profiles"] == 1

    fleet = json.loads(fetch(hub.url + "/v1/edges", hub.auth("viewer")).body)
    wait_for(
        lambda: (
            {
                e["edge_id"]: e["profile_sync_lag"]
                for e in json.loads(fetch(hub.url + "/v1/edges", hub.auth("viewer")).body)["edges"]
            }.get("other")
            == 0
        )
    )
    assert fleet["profiles_last_seq"] >= 1
    assert post_events(collector.url, [consent(["necessary", "analytics"])], cookie).status == 202
    wait_for(lambda: profiles(again.data_dir) == [] and profiles(collector.data_dir) == [])
    assert metric(fetch(again.url + "/_p13n/metrics").text, "p13n_edge_profiles_applied_total") == 1  # the purge


def test_a_known_user_gets_model_recommendations_from_profile_factors(
    nats_server: str,
    origin: Origin,
    trained_bundle,
    start_hub: HubFactory,
    start_agent: AgentFactory,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    import numpy as np

    trained = np.load(trained_bundle.path.parent / "user-factors-v1.npz", allow_pickle=False)
    factors_file = tmp_path / "user-factors.npz"
    with factors_file.open("wb") as f:  # this visitor is one of the trained users
        np.savez(f, ids=np.array([VISITOR]), factors=trained["factors"][:1])
    start_hub(nats_server, PROFILE_SYNC_S="0.3", USER_FACTORS=str(factors_file))
    edge = start_agent(
        origin.url, NATS_URL=nats_server, MODEL_BUNDLE=str(trained_bundle.path), BUNDLE_PUBLIC_KEY=str(trained_bundle.public_key)
    )
    cookie = {"Cookie": f"p13n_id={VISITOR}"}
    before = json.loads(fetch(edge.url + "/_p13n/decide?slots=recs&page=/p/dr01", cookie).body)
    assert before["slots"]["recs"]["detail"] == "popular"
    assert post_events(edge.url, [consent(["necessary", "analytics", "personalization"])], cookie).status == 202
    wait_for(lambda: len(profiles(edge.data_dir)) == 1)
    ((_, profile),) = profiles(edge.data_dir)
    assert len(profile["factors"]) == trained["factors"].shape[1]
    after = json.loads(fetch(edge.url + "/_p13n/decide?slots=recs&page=/p/dr01", cookie).body)
    assert after["slots"]["recs"]["detail"] == "als-profile"
