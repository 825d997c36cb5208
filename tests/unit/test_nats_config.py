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


def test_a_site_user_may_do_exactly_what_its_edges_may() -> None:
    from hub.nats_auth import edge_permissions, site_permissions

    both = site_permissions(["edge-1", "edge-2"])
    one, two = edge_permissions("edge-1"), edge_permissions("edge-2")
    for way in ("publish", "subscribe"):
        expected = set(one[way]["allow"]) | set(two[way]["allow"])  # type: ignore[index]
        assert set(both[way]["allow"]) == expected  # type: ignore[index]
    assert not any(s == ">" or s.startswith("$JS.API.STREAM") for s in both["publish"]["allow"])  # type: ignore[index]
    text = render("0.0.0.0:4222", "/d", "hubpw", {}, sites={"site-1": ("pw", ["edge-1"])}, leaf_listen="0.0.0.0:7422")
    assert 'leafnodes { listen: "0.0.0.0:7422" }' in text and '"user": "site-1"' in text


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"sites": {"site-1": ("pw", ["edge-1"])}}, "--leaf-listen"),
        ({"sites": {"hub": ("pw", ["edge-1"])}, "leaf_listen": "0.0.0.0:7422"}, "already a user"),
        ({"sites": {"site-1": ("pw", [])}, "leaf_listen": "0.0.0.0:7422"}, "names no edge"),
        ({"sites": {"site 1": ("pw", ["edge-1"])}, "leaf_listen": "0.0.0.0:7422"}, "invalid site id"),
    ],
)
def test_a_bad_site_is_refused(kwargs: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        render("0.0.0.0:4222", "/d", "hubpw", {}, **kwargs)  # type: ignore[arg-type]


def test_a_leaf_node_links_as_its_site_with_an_escaped_password() -> None:
    from hub.nats_auth import render_leaf

    text = render_leaf(
        "127.0.0.1:4222", {"edge-1": "ep"}, ["nats-leaf://hub-a:7422", "tls://hub-b:7422"], "site-1", "p/w@:", "/ca.pem"
    )
    assert "jetstream" not in text and '"user": "hub"' not in text  # no store, no hub user at the site
    assert '"urls": ["nats-leaf://site-1:p%2Fw%40%3A@hub-a:7422", "tls://site-1:p%2Fw%40%3A@hub-b:7422"]' in text
    assert '"tls": {"ca_file": "/ca.pem"}' in text
    for bad in (["http://hub:7422"], []):
        with pytest.raises(ValueError, match="--leaf"):
            render_leaf("127.0.0.1:4222", {"edge-1": "ep"}, bad, "site-1", "pw")
    with pytest.raises(ValueError, match="--site-password"):
        render_leaf("127.0.0.1:4222", {"edge-1": "ep"}, ["nats-leaf://hub:7422"], "site-1", "")


def test_routes_over_tls_verify_both_ways_and_need_all_three_files() -> None:
    node = Cluster("p13n", "a", ("nats-route://b:6222",), "pw", "0.0.0.0:6222", "/c/a.pem", "/c/a.key", "/c/ca.pem")
    text = render("0.0.0.0:4222", "/d", "hubpw", {}, cluster=node)
    assert 'tls { cert_file: "/c/a.pem", key_file: "/c/a.key", ca_file: "/c/ca.pem", verify: true } }' in text
    with pytest.raises(ValueError, match="go together"):
        render("0.0.0.0:4222", "/d", "hubpw", {}, cluster=Cluster("p13n", "a", (), "pw", "0.0.0.0:6222", "/c/a.pem"))
