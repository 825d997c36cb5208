"""What the agent's worker processes share, and how each learns another changed it.

With ``P13N_EDGE_WORKERS`` above 1 the server's parent creates a small file in the data
directory (:data:`FILE`) that every worker maps into memory (``mmap``, so reads and
writes are plain memory accesses, no system call). It holds:

* **stamps**: 65,536 64-bit slots. A worker that writes a visitor's session or
  profile to SQLite sets the visitor's slot (``crc32(id) % 65536``) to a value no other
  write uses (a counter from a random 63-bit start per process); a worker keeps, beside each session or profile it
  holds in memory, the slot's value when it read it, and reads SQLite again when the
  slot changed. A page so reflects the last event whichever worker took it, and a
  cached copy costs a memory read to validate. Two visitors sharing a slot only cost
  each other an extra read.
* **the erasure epoch** and each worker's last seen epoch: the worker applying an
  erasure raises the epoch; every worker then drops its caches, reloads the
  suppression list and commits what it accepted before, and records the epoch as
  seen. The erasure is acknowledged only when every live worker has (edge_agent/erasure.py).
* **the outbox depth**: events waiting in the shared outbox, added to by the worker
  that stores them and taken from by the one that publishes them, so every worker
  enforces ``P13N_EDGE_OUTBOX_MAX_EVENTS`` on the edge's total.
* **the parent's bundle version**: the bundle the parent last loaded for its workers
  to share (edge_agent/preload.py), and the model version each worker serves (the
  health check reports the oldest: edge_agent/health.py).

Slots are read without locks and written under the file's ``flock`` (a few
microseconds). A writer sets the slot inside its SQLite transaction, so a concurrent
writer sees that its base moved and merges (edge_agent/session_sync.py), and again
after the commit, so a reader that read between the two (and may hold the old row)
sees a change. The second write is conditional (:meth:`Coherence.bump_if`): were it
not, it could overwrite another writer's in-transaction value, and a worker could then
take a value as current while missing that writer's commit (a CI run lost one event of
82 that way).

:class:`OwnerLock` picks the one worker that does what must happen once per edge
(publishing the outbox, the heartbeat, the erasure consumer, the profile reader, the
session purge): an ``flock`` the kernel releases when its holder dies, so another
worker takes over within :data:`OWNER_POLL_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import mmap
import os
import secrets
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

#: The shared file in the data directory (rewritten whenever the server starts).
FILE = "workers.map"
#: The owner lock file in the data directory.
OWNER_FILE = "owner.lock"
#: Seconds between a non-owner's attempts to take the owner lock.
OWNER_POLL_S = 1.0

_MAGIC = 0x7031336E_00000001  # "p13n", layout 1
_EPOCH, _PARENT_VERSION, _OUTBOX = 1, 2, 3
_WORKERS_AT = 8
MAX_WORKERS = 64  # (pid, seen epoch, model version + 1) triples
_STRIDE = 3
_STAMPS_AT = _WORKERS_AT + _STRIDE * MAX_WORKERS
STAMP_SLOTS = 1 << 16
_SIZE = (_STAMPS_AT + STAMP_SLOTS) * 8


def create(data_dir: Path) -> Path:
    """A fresh shared file for a server about to start its workers."""
    path = data_dir / FILE
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.truncate(_SIZE)
        f.write(_MAGIC.to_bytes(8, "little"))
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Coherence:
    """One process's view of the shared file (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR)
        self._map = mmap.mmap(self._fd, _SIZE)
        self._q = memoryview(self._map).cast("Q")
        if self._q[0] != _MAGIC:
            raise ValueError(f"{path} is not a p13n workers file")
        self._pid = os.getpid()
        # values from a random start: no two processes (nor one reusing a pid) write the same
        self._counter = itertools.count(secrets.randbits(63))
        # the flock excludes other processes; this, the threads of this one (they share the fd)
        self._guard = threading.Lock()
        self._slot = -1

    # ------------------------------------------------------------------ stamps
    def stamp(self, key: str) -> int:
        return self._q[_STAMPS_AT + (zlib.crc32(key.encode()) & (STAMP_SLOTS - 1))]

    def bump(self, key: str) -> int:
        """Mark ``key`` changed; the new value (unique to this write)."""
        at = _STAMPS_AT + (zlib.crc32(key.encode()) & (STAMP_SLOTS - 1))
        with self._guard, self._locked():
            value = next(self._counter) & ((1 << 64) - 1)
            self._q[at] = value
        return value

    def bump_if(self, key: str, own: int) -> int:
        """After a commit whose transaction bumped ``key`` to ``own``: when the slot still
        holds ``own`` (no write since), a new value, which the writer may hold as current.
        Otherwise the slot is left alone (it already tells readers to read again) and
        ``own`` comes back, which no longer matches: the writer reads again too."""
        at = _STAMPS_AT + (zlib.crc32(key.encode()) & (STAMP_SLOTS - 1))
        with self._guard, self._locked():
            if self._q[at] != own:
                return own
            value = next(self._counter) & ((1 << 64) - 1)
            self._q[at] = value
        return value

    # ------------------------------------------------------------------ workers
    def _locked(self) -> _FileLock:
        return _FileLock(self._fd)

    def join(self) -> None:
        """Register this worker (its pid), taking a free or dead worker's place."""
        with self._locked():
            for i in range(MAX_WORKERS):
                at = _WORKERS_AT + _STRIDE * i
                pid = self._q[at]
                if pid == 0 or pid == self._pid or not _alive(int(pid)):
                    self._q[at] = self._pid
                    self._q[at + 1] = self._q[_EPOCH]
                    self._q[at + 2] = 0
                    self._slot = at
                    return
        raise RuntimeError(f"more than {MAX_WORKERS} agent workers share {self.path}")

    def leave(self) -> None:
        if self._slot >= 0:
            self._q[self._slot] = 0
            self._slot = -1

    def workers(self) -> dict[int, int | None]:
        """The registered workers still alive: pid → the model version it serves."""
        out: dict[int, int | None] = {}
        for i in range(MAX_WORKERS):
            at = _WORKERS_AT + _STRIDE * i
            pid = int(self._q[at])
            if pid and _alive(pid):
                version = int(self._q[at + 2])
                out[pid] = version - 1 if version else None
        return out

    def serving(self, model_version: int | None) -> None:
        """This worker now serves ``model_version`` (None: no models)."""
        if self._slot >= 0:
            self._q[self._slot + 2] = 0 if model_version is None else model_version + 1

    # ------------------------------------------------------------------ erasure epoch
    @property
    def epoch(self) -> int:
        return int(self._q[_EPOCH])

    def raise_epoch(self) -> int:
        with self._locked():
            self._q[_EPOCH] = self._q[_EPOCH] + 1
            return int(self._q[_EPOCH])

    def mark_seen(self, epoch: int) -> None:
        if self._slot >= 0:
            self._q[self._slot + 1] = epoch

    def lagging(self, epoch: int) -> list[int]:
        """Live workers that have not yet seen ``epoch``."""
        late = []
        for i in range(MAX_WORKERS):
            at = _WORKERS_AT + _STRIDE * i
            pid = int(self._q[at])
            if pid and self._q[at + 1] < epoch and _alive(pid):
                late.append(pid)
        return late

    async def wait_seen(self, epoch: int, timeout_s: float) -> list[int]:
        """Wait until every live worker has seen ``epoch``; the pids still late at the timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            late = self.lagging(epoch)
            if not late or time.monotonic() > deadline:
                return late
            await asyncio.sleep(0.005)

    # ------------------------------------------------------------------ outbox depth
    @property
    def outbox(self) -> int:
        return int(self._q[_OUTBOX])

    def add_outbox(self, events: int) -> int:
        """Events stored (positive) or published (negative); the depth after."""
        with self._locked():
            self._q[_OUTBOX] = max(0, int(self._q[_OUTBOX]) + events)
            return int(self._q[_OUTBOX])

    def set_outbox(self, events: int) -> None:
        with self._locked():
            self._q[_OUTBOX] = max(0, events)

    # ------------------------------------------------------------------ parent's bundle
    @property
    def parent_version(self) -> int:
        return int(self._q[_PARENT_VERSION])

    @parent_version.setter
    def parent_version(self, version: int) -> None:
        self._q[_PARENT_VERSION] = max(version, 0)

    def close(self) -> None:
        self.leave()
        self._q.release()
        self._map.close()
        os.close(self._fd)


class _FileLock:
    """``flock`` on an open file, for the short updates :class:`Coherence` serialises."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *_: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created 0600) against the other workers."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with _FileLock(fd):
            yield
    finally:
        os.close(fd)


class OwnerLock:
    """The lock naming the worker that does the edge's once-only work."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.held = False

    def try_acquire(self) -> bool:
        if not self.held:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            self.held = True
        return True

    async def acquire(self) -> None:
        """Wait until this worker holds the lock."""
        while not self.try_acquire():
            await asyncio.sleep(OWNER_POLL_S)

    def close(self) -> None:
        os.close(self._fd)  # releases the lock
        self.held = False
