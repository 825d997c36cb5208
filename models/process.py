"""Process hygiene shared by the hub and the edge agent."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def release_free_memory() -> None:
    """Give memory freed on the heap back to the system (glibc's ``malloc_trim``).

    Loading a bundle parses its graphs and copies arrays out of them; once those
    temporaries are freed the heap keeps their pages unless asked to return them, and a
    long-lived agent would carry them (about 18 MB for a 20,000-item bundle with text
    vectors, docs/PERFORMANCE.md). No-op where there is no such call.
    """
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this process when its parent dies.

    The HTTP server runs the app in a worker process; if the server's main process is
    killed outright (SIGKILL, OOM killer), an orphaned worker would keep serving and
    keep writing the data directory beside its replacement. No-op off Linux.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
