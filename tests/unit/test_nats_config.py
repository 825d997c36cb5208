"""``p13n nats-config --cluster``: what a node's configuration says, and what it refuses."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hub.nats_auth import Cluster, render


def test_a_cluster_node_names_itself_and_authenticates_its_routes() -> None:
    node = Cluster("p13n", "nats-a", ("nats-route://nats-b:6222", "nats-route://10.0.0.3:6222"), "s3cret/+@", "0.0.0.0:6222")
    text = render("0.0.0.0:4222", "/var/lib/nats", "hubpw", {"edge-1": "edgepw"}, cluster=node)
    assert text.startswith('server_name: "nats-a"\ncluster { name: "p13n", listen: "0.0.0.0:6222", ')
    assert 'authorization { user: route, password: "s3cret/+@" }' in text
    # the password in a route URL is escaped, so '/', '+' and '@' cannot break it
    assert '"nats-route://route:s3cret%2F%2B%40@nats-b:6222", "nats-route://route:s3cret%2F%2B%40@10.0.0.3:6222"' in text
    assert 'jetstream { store_dir: "/var/lib/nats" }' in text and '"user": "edge-1"' in text
    assert "cluster" not in render("0.0.0.0:4222", "/var/lib/nats", "hubpw", {})  # a single server stays one


@pytest.mark.parametrize(
    ("node", "problem"),
    [
        (Cluster("p13n", "", ("nats-route://b:6222",), "pw"), "--server-name"),
        (Cluster("p 13n", "a", ("nats-route://b:6222",), "pw"), "--cluster"),
        (Cluster("p13n", "a", ("nats-route://b:6222",), ""), "--cluster-password"),
        (Cluster("p13n", "a", ("nats://b:4222",), "pw"), "--route"),
        (Cluster("p13n", "a", ("nats-route://b",), "pw"), "--route"),
        (Cluster("p13n", "a\nlisten: 0.0.0.0:1", ("nats-route://b:6222",), "pw"), "--server-name"),
    ],
)
def test_a_bad_cluster_option_is_refused_by_name(node: Cluster, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        render("0.0.0.0:4222", "/data", "hubpw", {}, cluster=node)


def test_the_command_refuses_a_bad_route_with_exit_status_2() -> None:
    cluster = ["--cluster", "p13n", "--server-name", "a", "--cluster-password", "pw", "--route", "http://b:6222"]
    done = subprocess.run(
        [sys.executable, "-m", "p13n", "nats-config", "--hub-password", "x", *cluster],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "--route: expected nats-route://HOST:PORT" in done.stderr and done.stdout == ""
