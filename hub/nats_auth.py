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
        return [
            f"server_name: {json.dumps(self.server_name)}",
            "cluster { "
            + f"name: {json.dumps(self.name)}, listen: {json.dumps(self.listen)}, "
            + f"authorization {{ user: route, password: {json.dumps(self.password)} }}, "
            + f"routes: {json.dumps(routes)}"
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
) -> str:
    """The configuration text; ``edges`` maps edge id → password. ``store_key``
    encrypts JetStream's store at rest (ChaCha20-Poly1305), so consumed or deleted
    messages left in block files are not readable from the disk."""
    users: list[dict[str, object]] = [
        {"user": "hub", "password": hub_password, "permissions": {"publish": ">", "subscribe": ">"}}
    ]
    for edge_id, password in sorted(edges.items()):
        if not edge_id or not all(c.isalnum() or c in "-_" for c in edge_id):
            raise ValueError(f"invalid edge id {edge_id!r}")
        users.append({"user": edge_id, "password": password, "permissions": edge_permissions(edge_id)})
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
    lines.extend(extra)
    return "\n".join(lines) + "\n"
