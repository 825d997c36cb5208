"""The hub's training runs: one at a time, each recorded, the result shipped.

A run (scheduled by the ``training`` job, or ``POST /v1/training/runs``) reads the live
bundle and the next free version from NATS, then runs one cycle of the learning loop
(``hub.training.cycle``) in a spawned child process (``hub.training.child``), so the
serving process neither blocks nor loads the training libraries. When the gate passes
(or the run was forced), the bundle goes through the same upload and activation as a
push (``hub.bundles``, ``hub.fleet``): verified with the hub's public key, stored under
its version, made live on every edge. The record (``HubStore.training_runs``) says what
happened at each step; a run the hub stopped in the middle is marked failed at the
next start, and nothing of it is live (a bundle is activated only once stored whole).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from hub import bundles, fleet
from hub.audit import AuditLog
from hub.profiles import load_user_factors
from hub.settings import HubSettings
from hub.storage import HubStore, RunInProgress
from models.process import die_with_parent
from models.weights import EVENT_WEIGHTS

log = logging.getLogger(__name__)

#: Lines of a run's progress log shown by ``GET /v1/training/runs/{id}``.
PROGRESS_LINES = 20
#: How often the hub checks on its training process (seconds).
CHILD_POLL_S = 0.2


class TrainingBusy(Exception):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"training run {run_id} is in progress")


class TrainingService:
    def __init__(
        self,
        settings: HubSettings,
        registry: CollectorRegistry,
        on_factors: Callable[[dict[str, list[float]]], None] | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.settings = settings
        #: where the hub's own activations are recorded (actor ``training``)
        self.audit = audit
        #: given the user factors of each bundle shipped (the profile publisher takes them)
        self.on_factors = on_factors
        self.running: str | None = None
        self._task: asyncio.Task[None] | None = None
        #: events stored when the last run started (a scheduled run waits for more)
        self.accepted_at_last_run: int | None = None
        self.runs = Counter("p13n_hub_training_runs", "Training runs by outcome", ["outcome"], registry=registry)
        self.in_progress = Gauge("p13n_hub_training_running", "1 while a training run is in progress", registry=registry)
        self.last_seconds = Gauge("p13n_hub_training_last_run_seconds", "Duration of the last training run", registry=registry)

    @property
    def enabled(self) -> bool:
        return bool(self.settings.training_key)

    def progress_path(self, run_id: str) -> Path:
        return self.settings.training_dir / "runs" / f"{run_id}.log"

    def progress(self, run_id: str) -> list[str]:
        try:
            return self.progress_path(run_id).read_text(encoding="utf-8").splitlines()[-PROGRESS_LINES:]
        except OSError:
            return []

    async def start(self, store: HubStore, nc: Any, trigger: str, requested_by: str, force: bool) -> dict[str, Any]:
        """Record and start a run; raises :class:`TrainingBusy` while one is going."""
        if self.running is not None:
            raise TrainingBusy(self.running)
        accepted = (await asyncio.to_thread(store.counters)).get("accepted", 0)
        run_id = uuid.uuid4().hex[:12]
        run: dict[str, Any] = {
            "id": run_id,
            "trigger": trigger,
            "requested_by": requested_by,
            "force": force,
            "status": "running",
            "reason": "",
            "started_at": time.time(),
            "finished_at": None,
            "accepted_events": accepted,
            "version": None,
            "pushed": False,
        }
        self.running = run_id
        self.accepted_at_last_run = accepted
        try:
            # runs left "running" by a hub process that died since its start are failed first
            await asyncio.to_thread(store.training_runs.interrupted, time.time())
            await asyncio.to_thread(store.training_runs.create, run)
        except RunInProgress as e:  # another hub process's run, on a shared store
            self.running = None
            raise TrainingBusy(e.run_id) from e
        except BaseException:
            self.running = None
            raise
        self._task = asyncio.create_task(self._run(store, nc, run), name=f"hub-training-{run['id']}")
        return run

    async def wait(self) -> None:
        """Until the current run (if any) has ended."""
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(self._task)

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    def due(self, accepted_now: int) -> bool:
        """A scheduled run is due when enough events were stored since the last run."""
        need = self.settings.training_min_new_events
        last = self.accepted_at_last_run
        return need == 0 or last is None or accepted_now - last >= need

    async def _run(self, store: HubStore, nc: Any, run: dict[str, Any]) -> None:
        started = time.perf_counter()
        self.in_progress.set(1)
        outcome = "failed"
        try:
            fields = await self._cycle(store, nc, run)
            outcome = fields["status"]
        except asyncio.CancelledError:
            fields = {"status": "failed", "reason": "interrupted: the hub stopped during the run"}
            raise
        except Exception as e:
            log.warning("training run %s failed: %s", run["id"], e, exc_info=True)
            fields = {"status": "failed", "reason": f"{type(e).__name__}: {e}"[:500]}
        finally:
            fields["finished_at"] = time.time()
            self.runs.labels(outcome).inc()
            self.in_progress.set(0)
            self.last_seconds.set(time.perf_counter() - started)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(store.training_runs.update, run["id"], fields)
            self.running = None
            log.info("training run %s: %s %s", run["id"], fields["status"], fields.get("reason", ""))

    async def _cycle(self, store: HubStore, nc: Any, run: dict[str, Any]) -> dict[str, Any]:
        s = self.settings
        js = nc.jetstream()
        pointer = await fleet.current_pointer(nc)
        champion: bytes | None = None
        if pointer is not None:
            champion = await bundles.fetch(js, int(pointer["version"]))
        version = max((b["version"] for b in await bundles.stored(js)), default=0) + 1
        config = {
            "out_dir": str(s.training_dir),
            "key_file": s.training_key,
            "rules": {
                "window_days": s.training_window_days,
                "half_life_days": s.training_half_life_days,
                "event_weights": dict(EVENT_WEIGHTS),
                "min_interactions": s.training_min_interactions,
                "min_subjects": s.training_min_subjects,
                "min_items": s.training_min_items,
            },
            "holdout_days": s.training_holdout_days,
            "tolerance": s.training_tolerance,
            "gate_min_users": s.training_gate_min_users,
            "templates": s.training_templates or None,
            "encoder": s.training_encoder or None,
            "tune": s.training_tune,
            "segment_kinds": list(s.training_segment_kinds),
            "version": version,
            "force": bool(run["force"]),
        }
        result: dict[str, Any] = await in_child(
            "hub.training.child:run",  # imported in the child only: the hub never loads the training libraries
            str(s.data_dir),
            s.database_url,
            s.pseudonym_key,
            config,
            champion,
            str(self.progress_path(run["id"])),
            datetime.now(UTC).isoformat(),
        )
        fields: dict[str, Any] = {
            "status": result["outcome"],
            "reason": result["reason"],
            "summary": result["summary"],
            "timings": result["timings"],
            "gate": result["gate"],
            "metrics": result["metrics"],
            "live_version": int(pointer["version"]) if pointer else None,
        }
        if result["outcome"] in ("passed", "forced"):
            data = Path(result["bundle_path"]).read_bytes()
            entry = await bundles.upload(js, data, Path(s.bundle_public_key).read_bytes())
            await fleet.activate(nc, int(entry["version"]))
            if self.audit is not None:  # every change of the live bundle is in the chain
                detail = {
                    "run": run["id"],
                    "version": entry["version"],
                    "sha256": entry["sha256"],
                    "forced": result["outcome"] == "forced",
                }
                await asyncio.to_thread(
                    self.audit.append,
                    "training",
                    "hub",
                    "bundles.activate",
                    bundles.bundle_name(int(entry["version"])),
                    200,
                    detail,
                )
            fields.update(version=entry["version"], sha256=entry["sha256"], pushed=True, report=Path(result["report_path"]).name)
            factors = s.training_dir / f"user-factors-v{entry['version']}.npz"
            if factors.exists():
                fields["user_factors"] = factors.name
                if self.on_factors is not None:  # consented profiles carry the new factors
                    self.on_factors(await asyncio.to_thread(load_user_factors, str(factors)))
        return fields


async def in_child(target: str, *args: Any) -> Any:
    """``module:function`` called with ``args`` in a spawned process (the module is
    imported there, not here); its result, or RuntimeError with the child's error.
    Cancelled, the process is terminated (it also dies with the hub)."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(send, target, args), name="p13n-training")
    proc.start()
    send.close()
    try:
        while not receive.poll():
            if not proc.is_alive():
                raise RuntimeError(f"the training process ended without a result (exit code {proc.exitcode})")
            await asyncio.sleep(CHILD_POLL_S)
        try:
            ok, value = receive.recv()
        except EOFError:  # it died before sending (killed, out of memory)
            await asyncio.to_thread(proc.join, 5)
            raise RuntimeError(f"the training process ended without a result (exit code {proc.exitcode})") from None
    finally:
        if proc.is_alive():
            proc.terminate()
        await asyncio.to_thread(proc.join, 10)
        receive.close()
    if not ok:
        raise RuntimeError(value)
    return value


def _child_main(send: Any, target: str, args: tuple[Any, ...]) -> None:
    die_with_parent()
    try:
        module, name = target.split(":")
        send.send((True, getattr(importlib.import_module(module), name)(*args)))
    except BaseException as e:  # the parent records it
        send.send((False, f"{type(e).__name__}: {e}"[:1000]))
