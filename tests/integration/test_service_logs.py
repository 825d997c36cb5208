"""What an operator reads: one start-up line per service, NATS trouble as one line per
streak (never a traceback per retry), credentials never in the log."""

from __future__ import annotations

import time
from pathlib import Path

from p13n.procs import free_port, p13n_command, spawn
from tests.conftest import AgentFactory, Origin
from tests.integration.helpers import wait_for


def test_an_unreachable_nats_is_one_line_not_a_traceback_per_retry(
    origin: Origin, start_agent: AgentFactory, tmp_path: Path
) -> None:
    nowhere = f"nats://edge-1:s3cret-password@127.0.0.1:{free_port()}"
    agent = start_agent(origin.url, NATS_URL=nowhere)
    time.sleep(4)  # nats-py retries every half second meanwhile
    log = agent.child.log()
    assert log.count("p13n.startup") == 1 and "nats://edge-1:***@127.0.0.1" in log
    assert log.count("NATS unreachable") == 1, log
    assert "Traceback" not in log and "s3cret-password" not in log
    # several workers: one line says the edge serves, each worker only that it is ready
    workers = start_agent(origin.url, WORKERS="2")
    wait_for(lambda: workers.child.log().count("ready on") == 2, timeout_s=20)
    assert workers.child.log().count("serving on") == 1 and "with 2 workers" in workers.child.log()

    # the hub does not answer healthy without NATS: started by hand, read after a while
    env = {
        "P13N_HUB_LISTEN": f"127.0.0.1:{free_port()}",
        "P13N_HUB_NATS_URL": f"nats://hub:hub-password@127.0.0.1:{free_port()}",
        "P13N_HUB_DATA_DIR": str(tmp_path / "hub"),
        "P13N_HUB_NATS_RETRY_S": "0.1",
        "P13N_ALLOW_DEV_KEYS": "1",
    }
    hub = spawn("hub-no-nats", p13n_command("hub", "serve"), tmp_path, env)
    try:
        time.sleep(4)
        hub_log = hub.log()
    finally:
        hub.stop()
    assert hub_log.count("p13n.startup") == 1 and "hub-password" not in hub_log
    assert hub_log.count("NATS unreachable") == 1 and "Traceback" not in hub_log, hub_log
