"""``p13n nats-config``: a nats-server configuration with per-edge credentials.

The hub may do anything. An edge may publish only its own events, status and erasure
acknowledgements, use the JetStream API (to publish with acks and to read bundles,
profiles and control keys) and receive replies on its inbox; it can never publish as
another edge. TLS is enabled when a certificate and key are given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from models import nats_layout as L


def edge_permissions(edge_id: str) -> dict[str, object]:
    return {
        "publish": {
            "allow": [
                L.events_subject(edge_id),
                L.status_subject(edge_id),
                L.erasure_ack_subject(edge_id),
                "$JS.API.>",
                "$JS.ACK.>",
                "$JS.FC.>",
                "_INBOX.>",
            ],
            "deny": [f"{L.EVENTS_SUBJECT_PREFIX}.*.>"],
        },
        "subscribe": {
            "allow": [
                "_INBOX.>",
                f"$KV.{L.PROFILES_BUCKET}.>",
                f"$KV.{L.CONTROL_BUCKET}.>",
                f"$O.{L.MODELS_BUCKET}.>",
                L.ERASURE_ORDERS_SUBJECT,
            ]
        },
    }


def render(
    listen: str,
    store_dir: str,
    hub_password: str,
    edges: Mapping[str, str],
    tls_cert: str = "",
    tls_key: str = "",
    extra: Sequence[str] = (),
    store_key: str = "",
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
