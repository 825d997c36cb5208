"""Authentication failures in the audit log without letting a brute force grow it.

The first 401 of an endpoint in a window is audited at once; the ones after it in the
same window are counted and audited as one entry (``{"repeated": n}``) when the window
closes — at the next refusal after it, or at shutdown. A Prometheus counter sees every
failure as it happens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RefusalAggregator:
    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        #: action → [window start, refusals after the first]
        self._windows: dict[str, list[float]] = {}

    def admit(self, action: str) -> tuple[bool, list[tuple[str, int]]]:
        """(audit this refusal now, closed windows' (action, further refusals) to audit)."""
        now = self._clock()
        with self._lock:
            closed = [(a, int(w[1])) for a, w in self._windows.items() if now - w[0] >= self.window_s]
            for a, _ in closed:
                del self._windows[a]
            window = self._windows.get(action)
            if window is None:
                self._windows[action] = [now, 0]
                first = True
            else:
                window[1] += 1
                first = False
        return first, [(a, n) for a, n in closed if n]

    def drain(self) -> list[tuple[str, int]]:
        """Every window's further refusals, closing them (at shutdown)."""
        with self._lock:
            out = [(a, int(w[1])) for a, w in self._windows.items() if w[1]]
            self._windows.clear()
        return out
