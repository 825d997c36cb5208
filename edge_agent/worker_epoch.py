"""Erasures and profile purges reaching every worker process.

The worker that applies an erasure (the owner, edge_agent/erasure.py) persists the
subject's suppression tokens, then calls :func:`sync_workers`: it raises the erasure
epoch in the shared file (edge_agent/coherence.py) and waits until every live worker
has seen it. A worker sees it within :data:`POLL_S` (:func:`follow_epoch`): it reloads
the suppression list, so from then on it refuses the subject's events, commits what
it accepted before (the outbox writer's barrier), drops its cached sessions, profiles
and the models' remembered answers, and records the epoch as seen. The owner then
deletes the subject's rows and syncs once more, so nothing a worker read in between
survives in memory; only then is the erasure acknowledged.
"""

from __future__ import annotations

import asyncio
import logging

from edge_agent.state import EdgeState
from models.tasks import checkpoint

log = logging.getLogger(__name__)

#: Seconds between a worker's looks at the epoch.
POLL_S = 0.01
#: Longest wait for every worker to see an epoch (a worker that does not is stuck, and
#: the server replaces it: WORKER_KILL_TIMEOUT_S in p13n/serve.py).
WAIT_S = 10.0


async def sync_workers(state: EdgeState) -> None:
    """Make every worker drop what it holds and take the suppression list again."""
    coh = state.coherence
    if coh is None:
        return
    epoch = coh.raise_epoch()
    late = await coh.wait_seen(epoch, WAIT_S)
    if late:
        log.warning("workers %s did not see erasure epoch %d within %.0f s", late, epoch, WAIT_S)


async def follow_epoch(state: EdgeState) -> None:
    """Every worker, forever: apply each new epoch (see the module docstring)."""
    coh = state.coherence
    assert coh is not None
    while True:
        checkpoint()
        await asyncio.sleep(POLL_S)
        epoch = coh.epoch
        if epoch == state.seen_epoch:
            continue
        state.store.reload_suppressed()
        await state.outbox_writer.write([])  # barrier: what was accepted before is committed
        state.forget_all()
        state.seen_epoch = epoch
        coh.mark_seen(epoch)
