"""A throwaway PostgreSQL server for tests and benchmarks: Debian's binaries
(``/usr/lib/postgresql/<version>/bin``, or ``initdb`` on the PATH), a new cluster in a
temporary directory, listening on 127.0.0.1 on a free port, trust authentication on
loopback only, durability off (a test's data never outlives it).

PostgreSQL refuses to run as root; as root (CI) the cluster belongs to the
``postgres`` user the Debian package creates, and the server runs as that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Settings for speed where nothing needs to survive: no fsync, no full pages.
FAST = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def binary_dir() -> Path | None:
    """Where ``initdb`` and ``postgres`` are (the newest version installed), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """``start()`` a cluster; ``url(db)`` names a database on it; ``create(db)`` makes one."""

    def __init__(self, bin_dir: Path, settings: tuple[str, ...] = FAST) -> None:
        self.bin_dir = bin_dir
        self.settings = settings
        self.root = Path(tempfile.mkdtemp(prefix="p13n-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._demote: Callable[[], None] | None = None
        if os.geteuid() == 0:  # PostgreSQL will not run as root
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)

            def demote() -> None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

            self._demote = demote

    def _run(self, *args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, preexec_fn=self._demote, cwd=self.root)

    def start(self) -> PostgresServer:
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "p13n", "--auth=trust", "-E", "UTF8", "--no-sync")
        args = [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.root)]
        args += ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"]
        for setting in self.settings:
            args += ["-c", setting]
        with (self.root / "server.log").open("wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=self._demote, cwd=self.root)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                self.query("postgres", "SELECT 1")
                return self
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start: {(self.root / 'server.log').read_text()[-2000:]}") from None
                time.sleep(0.1)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://p13n@127.0.0.1:{self.port}/{database}"

    def query(self, database: str, sql: str) -> Any:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True, connect_timeout=5) as db:
            return db.execute(sql).fetchall() if sql.lstrip().upper().startswith("SELECT") else db.execute(sql)

    def create(self, database: str) -> str:
        """A new, empty database; its URL."""
        self.query("postgres", f'CREATE DATABASE "{database}"')
        return self.url(database)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # a fast shutdown (SIGTERM's waits for every client)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)
