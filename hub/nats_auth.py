"""``p13n nats-config``: a nats-server configuration with least-privilege edge users.

The hub may do anything. An edge (a machine we do not control) may do exactly its own
work and nothing else (docs/SECURITY.md has the attack list the tests replay):

* publish its own events (with JetStream acks), status heartbeats and erasure
  acknowledgements, on subjects that carry its id;
* read the profiles and control buckets and the model store with direct gets, which
  are read-only — no stream, consumer or bucket administration, no writes;
* fetch from and acknowledge its own erasure consumer, which the hub creates (an edge
  may create no consumer: a consumer's deliver subject is not covered by permissions,
  so it could republish a stream onto another stream's subject);
* receive replies on its own inbox prefix only, and change notifications of the
  profiles bucket and the ``bundle.current`` key.

TLS is enabled when a certificate and key are given. With a :class:`Cluster` the
server is one node of a JetStream cluster (``--cluster``): a server name, the cluster
name, its route listener and the routes to the other nodes, with a route password.

A site's edges may attach through a **leaf node** at the site (``--leaf``,
:func:`render_leaf`): a local server with the same least-privilege edge users and no
JetStream of its own, connected to the hub's servers as the site's user. That user
(``--site SITE:PASSWORD:EDGE,…`` on the hub's servers, with ``--leaf-listen``) holds
exactly the union of its edges' permissions, which is also all that crosses the leaf
link: a hostile site can do no more than its edges could.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from models import nats_layout as L

#: Streams an edge reads with direct gets.
EDGE_READABLE_STREAMS = (f"KV_{L.PROFILES_BUCKET}", f"KV_{L.CONTROL_BUCKET}", f"OBJ_{L.MODELS_BUCKET}")


def _valid_id(value: str, what: str) -> str:
    if not value or not all(c.isalnum() or c in "-_" for c in value):
        raise ValueError(f"invalid {what} {value!r}")
    return value


def site_permissions(edge_ids: Sequence[str]) -> dict[str, object]:
    """What a site's leaf node may do: the union of its edges' permissions."""
    publish: list[str] = []
    subscribe: list[str] = []
    for edge_id in edge_ids:
        perms = edge_permissions(_valid_id(edge_id, "edge id"))
        publish += [s for s in perms["publish"]["allow"] if s not in publish]  # type: ignore[index]
        subscribe += [s for s in perms["subscribe"]["allow"] if s not in subscribe]  # type: ignore[index]
    return {"publish": {"allow": publish}, "subscribe": {"allow": subscribe}}


def edge_permissions(edge_id: str) -> dict[str, object]:
    consumer = L.erasure_consumer(edge_id)
    direct_gets = [f"$JS.API.DIRECT.GET.{s}{tail}" for s in EDGE_READABLE_STREAMS for tail in ("", ".>")]
    return {
        "publish": {
            "allow": [
                L.events_subject(edge_id),
                L.status_subject(edge_id),
                L.erasure_ack_subject(edge_id),
                *direct_gets,
                f"$JS.API.CONSUMER.INFO.{L.ERASURE_STREAM}.{consumer}",
                f"$JS.API.CONSUMER.MSG.NEXT.{L.ERASURE_STREAM}.{consumer}",
                f"$JS.ACK.{L.ERASURE_STREAM}.{consumer}.>",
            ],
        },
        "subscribe": {
            "allow": [
                f"{L.edge_inbox_prefix(edge_id)}.>",
                f"$KV.{L.PROFILES_BUCKET}.>",
                f"$KV.{L.CONTROL_BUCKET}.{L.CURRENT_BUNDLE_KEY}",
            ]
        },
    }


_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Cluster:
    """One node of a NATS cluster: ``routes`` are the other nodes' route URLs
    (``nats-route://HOST:6222``); ``password`` authenticates routes both ways (user
    ``route``), so nothing else on the network can join."""

    name: str
    server_name: str
    routes: tuple[str, ...]
    password: str
    listen: str = "0.0.0.0:6222"
    #: Route TLS (all three or none): this node's certificate and key, and the CA every
    #: node's certificate must chain to (verified both ways)
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""

    def lines(self) -> list[str]:
        for label, value in (("--cluster", self.name), ("--server-name", self.server_name)):
            if not _NAME.match(value):
                raise ValueError(f"{label}: letters, digits, '-' and '_' only, got {value!r}")
        if not self.password:
            raise ValueError("--cluster-password is required with --cluster")
        routes = []
        for route in self.routes:
            parts = urlsplit(route)
            if parts.scheme != "nats-route" or not parts.hostname or parts.port is None:
                raise ValueError(f"--route: expected nats-route://HOST:PORT, got {route!r}")
            routes.append(f"nats-route://route:{quote(self.password, safe='')}@{parts.hostname}:{parts.port}")
        tls = ""
        if any((self.tls_cert, self.tls_key, self.tls_ca)):
            if not all((self.tls_cert, self.tls_key, self.tls_ca)):
                raise ValueError("--route-tls-cert, --route-tls-key and --route-tls-ca go together")
            tls = (
                f", tls {{ cert_file: {json.dumps(self.tls_cert)}, key_file: {json.dumps(self.tls_key)}, "
                f"ca_file: {json.dumps(self.tls_ca)}, verify: true }}"
            )
        return [
            f"server_name: {json.dumps(self.server_name)}",
            "cluster { "
            + f"name: {json.dumps(self.name)}, listen: {json.dumps(self.listen)}, "
            + f"authorization {{ user: route, password: {json.dumps(self.password)} }}, "
            + f"routes: {json.dumps(routes)}{tls}"
            + " }",
        ]


def render(
    listen: str,
    store_dir: str,
    hub_password: str,
    edges: Mapping[str, str],
    tls_cert: str = "",
    tls_key: str = "",
    extra: Sequence[str] = (),
    store_key: str = "",
    cluster: Cluster | None = None,
    sites: Mapping[str, tuple[str, Sequence[str]]] | None = None,
    leaf_listen: str = "",
) -> str:
    """The configuration text; ``edges`` maps edge id → password. ``store_key``
    encrypts JetStream's store at rest (ChaCha20-Poly1305), so consumed or deleted
    messages left in block files are not readable from the disk. ``sites`` maps a site
    id → (password, its edge ids): the users that sites' leaf nodes connect as, on
    ``leaf_listen``."""
    users: list[dict[str, object]] = [
        {"user": "hub", "password": hub_password, "permissions": {"publish": ">", "subscribe": ">"}}
    ]
    for edge_id, password in sorted(edges.items()):
        users.append({"user": _valid_id(edge_id, "edge id"), "password": password, "permissions": edge_permissions(edge_id)})
    for site, (password, site_edges) in sorted((sites or {}).items()):
        if _valid_id(site, "site id") in edges or site == "hub":
            raise ValueError(f"site id {site!r} is already a user")
        if not site_edges:
            raise ValueError(f"site {site!r} names no edge")
        users.append({"user": site, "password": password, "permissions": site_permissions(site_edges)})
    if sites and not leaf_listen:
        raise ValueError("--site needs --leaf-listen (where the sites' leaf nodes connect)")
    lines = [
        *(cluster.lines() if cluster is not None else []),
        f"listen: {json.dumps(listen)}",
        f"jetstream {{ store_dir: {json.dumps(store_dir)}"
        + (f", cipher: chachapoly, key: {json.dumps(store_key)}" if store_key else "")
        + " }",
        f"authorization {{ users: {json.dumps(users)} }}",
    ]
    if tls_cert and tls_key:
        lines.append(f"tls {{ cert_file: {json.dumps(tls_cert)}, key_file: {json.dumps(tls_key)} }}")
    if leaf_listen:
        # no authorization block of its own: leaf nodes log in as the sites' users above,
        # whose permissions then bound everything that crosses the leaf link
        tls = f", tls {{ cert_file: {json.dumps(tls_cert)}, key_file: {json.dumps(tls_key)} }}" if tls_cert and tls_key else ""
        lines.append(f"leafnodes {{ listen: {json.dumps(leaf_listen)}{tls} }}")
    lines.extend(extra)
    return "\n".join(lines) + "\n"


def render_leaf(
    listen: str,
    edges: Mapping[str, str],
    remotes: Sequence[str],
    site: str,
    site_password: str,
    tls_ca: str = "",
) -> str:
    """A site's leaf node: its edges' users (least privilege, as on the hub's servers),
    no JetStream of its own, and one leaf connection to the hub's servers (``remotes``,
    ``nats-leaf://HOST:7422``; TLS verified with ``tls_ca`` when given) as ``site``."""
    _valid_id(site, "site id")
    if not site_password:
        raise ValueError("--site-password is required with --leaf")
    if not edges:
        raise ValueError("--leaf needs the site's edges (--edge ID:PASSWORD)")
    if not remotes:
        raise ValueError("--leaf needs the hub's servers (nats-leaf://HOST:PORT)")
    urls = []
    for given in remotes:
        parts = urlsplit(given)
        if parts.scheme not in ("nats-leaf", "tls") or not parts.hostname or parts.port is None:
            raise ValueError(f"--leaf: expected nats-leaf://HOST:PORT, got {given!r}")
        urls.append(f"{parts.scheme}://{site}:{quote(site_password, safe='')}@{parts.hostname}:{parts.port}")
    users = [
        {"user": _valid_id(e, "edge id"), "password": pw, "permissions": edge_permissions(e)} for e, pw in sorted(edges.items())
    ]
    remote: dict[str, object] = {"urls": urls}
    if tls_ca:
        remote["tls"] = {"ca_file": tls_ca}
    return (
        "\n".join(
            [
                f"server_name: {json.dumps(site)}",
                f"listen: {json.dumps(listen)}",
                f"authorization {{ users: {json.dumps(users)} }}",
                f"leafnodes {{ remotes: {json.dumps([remote])} }}",
            ]
        )
        + "\n"
    )
