"""Load shedding: past its capacity the agent answers pages with fallbacks at once
instead of queueing them.

Requests that wait for the event loop show up as loop lag: a timer that should fire
every :data:`SAMPLE_S` fires late by however long the queue ahead of it took. While
the lag is above ``P13N_EDGE_SHED_LAG_MS`` the page path skips the decisions (context,
segment, models) and serves every slot's fallback (reason ``overload``), which costs a
fraction of a decided page, so the queue drains instead of growing; collection is not
shed (an event dropped is lost, a fallback is not). The lag is a moving average
(weight :data:`WEIGHT` per sample): one stall (a long collection, a slow disk write)
does not shed the pages behind it, a queue that lasts does within a few samples, and
shedding stops a few samples after the queue is gone rather than flapping per request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

#: Seconds between two lag samples.
SAMPLE_S = 0.005
#: Weight of the newest sample in the moving average of the lag.
WEIGHT = 0.3


@dataclass
class LoadShedder:
    """The loop's recent lag and whether pages are shed (``threshold_s`` 0: never)."""

    threshold_s: float
    lag_s: float = 0.0
    active: bool = False

    def observe(self, lag_s: float) -> None:
        """Fold in one sample."""
        self.lag_s += WEIGHT * (lag_s - self.lag_s)
        self.active = self.threshold_s > 0 and self.lag_s > self.threshold_s

    async def run(self) -> None:
        """Sample the loop's lag forever (a task of the app's lifespan)."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(SAMPLE_S)
            self.observe(max(0.0, loop.time() - started - SAMPLE_S))
