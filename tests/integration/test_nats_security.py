"""Per-edge NATS credentials and TLS: events flow end to end over TLS with each side's
own user; an edge's credentials cannot publish as another edge; wrong passwords and
plain-text clients are refused. A throwaway CA is generated for the test."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import nats
import pytest

from hub.nats_auth import render
from models import nats_layout as L
from models.tls import client_context
from p13n.procs import free_port, nats_server_binary, spawn, wait_port
from tests.conftest import AgentFactory, HubFactory, Origin
from tests.integration.ingest_helpers import page_view, post_events, wait_accepted
from tests.integration.tls_helpers import make_ca


def test_credentials_and_tls(tmp_path: Path, origin: Origin, start_hub: HubFactory, start_agent: AgentFactory) -> None:
    ca, cert, key = make_ca(tmp_path)
    port = free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(
        render(
            f"127.0.0.1:{port}",
            str(tmp_path / "js"),
            "hub-secret",
            {"edge-1": "pw-1", "edge-2": "pw-2"},
            str(cert),
            str(key),
            store_key="store-secret-0123456789",
        )
    )
    server = spawn("nats-tls", [str(nats_server_binary()), "-c", str(conf)], tmp_path)
    try:
        wait_port(server, port)
        hub = start_hub(f"tls://hub:hub-secret@127.0.0.1:{port}", NATS_CA=str(ca))
        edge = start_agent(origin.url, ID="edge-1", NATS_URL=f"tls://edge-1:pw-1@127.0.0.1:{port}", NATS_CA=str(ca))
        assert post_events(edge.url, [page_view() for _ in range(3)]).status == 202
        wait_accepted(hub, 3)  # TLS + the edge's own user, end to end

        async def keep_marker() -> None:
            nc = await nats.connect(f"tls://hub:hub-secret@127.0.0.1:{port}", tls=client_context(str(ca)))
            kv = await nc.jetstream().key_value(L.CONTROL_BUCKET)
            await kv.put("test.marker", b"plaintext-marker")
            await nc.flush()
            await nc.close()

        asyncio.run(keep_marker())
        time.sleep(0.5)
        # the JetStream store is encrypted at rest: a stored value is not readable on disk
        blocks = [p for p in (tmp_path / "js").rglob("*.blk")]
        assert blocks and not [p for p in blocks if b"plaintext-marker" in p.read_bytes()]

        async def probe() -> dict[str, str]:
            out: dict[str, str] = {}
            tls = client_context(str(ca))
            nc = await nats.connect(
                f"tls://edge-1:pw-1@127.0.0.1:{port}", tls=tls, allow_reconnect=False, inbox_prefix=L.edge_inbox_prefix("edge-1")
            )
            js = nc.jetstream()
            out["own"] = str((await js.publish("p13n.events.edge-1", b"[]", timeout=5)).stream)
            try:
                await js.publish("p13n.events.edge-2", b"[]", timeout=2)
                out["other"] = "published"
            except Exception as e:  # permissions violation: no ack ever comes
                out["other"] = type(e).__name__
            await nc.close()
            for name, url, tls_ctx in (
                ("wrong_password", f"tls://edge-1:nope@127.0.0.1:{port}", tls),
                ("plain_text", f"nats://edge-1:pw-1@127.0.0.1:{port}", None),
            ):
                try:
                    bad = await nats.connect(url, tls=tls_ctx, allow_reconnect=False, connect_timeout=2)
                    await bad.close()
                    out[name] = "connected"
                except Exception as e:
                    out[name] = type(e).__name__
            return out

        result = asyncio.run(probe())
        assert result["own"] == "P13N_EVENTS"
        assert result["other"] != "published"
        assert result["wrong_password"] != "connected" and result["plain_text"] != "connected"
    finally:
        server.stop()


def test_nats_config_refuses_bad_edge_ids() -> None:
    with pytest.raises(ValueError, match="invalid edge id"):
        render("127.0.0.1:4222", "/tmp/js", "pw", {"edge 1": "x"})
    text = render("0.0.0.0:4222", "/data", "pw", {"edge-9": str(uuid.uuid4())})
    assert '"p13n.events.edge-9"' in text and '"user": "hub"' in text and "tls" not in text
