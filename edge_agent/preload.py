"""Load the content and the models once, in the server's parent, for every worker.

``p13n edge serve`` runs the agent in worker processes that the HTTP server forks from
its parent (``P13N_EDGE_WORKERS``). :func:`prepare` runs in the parent before that
fork: it migrates the SQLite store (once, not once per worker), loads the content
bundle and the model bundle, and moves them out of the garbage collector's view
(``gc.freeze``), so the workers inherit them copy-on-write and share their pages
instead of each holding a copy (measured in docs/PERFORMANCE.md: tests/bench/workers.py).
A worker's app takes them with :func:`take`; an app built in-process (tests, benches)
finds nothing here and loads for itself.

This is done with more than one worker (one worker loads for itself, as it would
otherwise hold a second copy beside the parent's after its first swap); the parent
also creates the shared file of :mod:`edge_agent.coherence` and a fresh directory for
the workers' metrics. When a
worker accepts a new bundle from the hub the parent reloads it (:func:`reload`, the
server's reload hook) and the server replaces its workers one at a time, so after a
swap the workers share the new bundle as they shared the old.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from edge_agent import coherence
from edge_agent.bundle_sync import load_persisted
from edge_agent.context import device_class
from edge_agent.model_runtime import load_models
from edge_agent.settings import EdgeSettings
from edge_agent.state import class_key, load_bundle
from edge_agent.store import EdgeStore
from models.bundle_runtime import BundleModels
from models.content import BundleError, ContentBundle, load_content
from models.nats_log import redact_url, startup_logger

log = logging.getLogger(__name__)

#: The workers' metric files (prometheus_client's multiprocess mode), in the data directory.
METRICS_DIR = "metrics"


@dataclass
class Loaded:
    bundle: ContentBundle | None
    models: BundleModels | None
    #: ``templates:DIR``, ``file:PATH`` or ``model bundle vN``
    source: str


def load_start(settings: EdgeSettings, prefer_persisted: bool = False, content: Loaded | None = None) -> Loaded:
    """The content and models an agent starts with: the configured model bundle, else
    the last bundle accepted from the hub (``prefer_persisted``: that one first), and the
    content from the model bundle, else the configured content. Whatever fails to load is
    logged and left out: the page path serves fallbacks rather than refuse to start.
    ``content``: keep its content unless the model bundle carries some (a swap's rule)."""
    if content is not None:
        bundle, source = content.bundle, content.source
    else:
        bundle = None
        source = f"file:{settings.bundle}" if settings.bundle else f"templates:{settings.templates_dir}"
        try:
            bundle = load_bundle(settings)
        except (OSError, ValueError, BundleError) as e:
            log.error("no content bundle loaded (%s); every slot renders its fallback", e)
    models = None
    if prefer_persisted and settings.bundle_public_key:
        models = _persisted(settings)
    if models is None and settings.model_bundle:
        try:
            models = load_models(settings.model_bundle, settings.bundle_public_key, settings.model_memo_entries)
            log.info("model bundle v%d loaded", models.version)
        except (OSError, ValueError, KeyError) as e:
            log.error("model bundle %s refused (%s); serving without models", settings.model_bundle, e)
    if models is None and settings.bundle_public_key:  # offline start: the last bundle accepted
        models = _persisted(settings)
    if models is not None and models.content_doc is not None:
        bundle = load_content(models.content_doc)
        source = f"model bundle v{models.version}"
        models.content_doc = None  # the parsed bundle is all that is needed
    return Loaded(bundle, models, source)


def _persisted(settings: EdgeSettings) -> BundleModels | None:
    try:
        return load_persisted(settings)
    except (OSError, ValueError, KeyError) as e:
        log.error("persisted bundle refused (%s)", e)
        return None


_loaded: Loaded | None = None
_shared: Path | None = None


def prepare(settings: EdgeSettings, workers: int) -> None:
    """In the server's parent, before its workers start (see the module docstring)."""
    global _loaded, _shared
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = EdgeStore(settings.data_dir / "edge.sqlite3")  # migrations: once, here
    depth = store.outbox_depth()
    store.close()
    if settings.shared_fragment_ttl_s > 0 or workers > 1:
        class_key(settings)  # made here, so every worker has the same key
    if workers <= 1:  # the worker loads for itself: the parent would only hold a second copy after a swap
        return
    _shared = coherence.create(settings.data_dir)
    _metrics_dir(settings.data_dir)
    _loaded = load_start(settings)
    _publish_version(depth)
    device_class("Mozilla/5.0")  # the UA parser's rules, shared too
    _freeze()
    models = _loaded.models
    startup_logger().info(
        "p13n edge %s serving on %s:%d with %d workers: content %s (v%s), model %s, NATS %s, origin %s",
        settings.edge_id,
        *settings.listen,
        workers,
        _loaded.source,
        _loaded.bundle.version if _loaded.bundle else "none",
        f"v{models.version}" if models else "none",
        redact_url(settings.nats_url),
        settings.origin,
    )


def reload(settings: EdgeSettings) -> None:
    """The server's reload hook (in the parent): load the bundle a worker persisted."""
    global _loaded
    if _shared is None:
        return
    # as a worker's swap does: a bundle without content keeps the content served before
    loaded = load_start(settings, prefer_persisted=True, content=_loaded)
    gc.unfreeze()  # the old bundle's reference cycles may be collected now
    _loaded = loaded
    _publish_version()
    _freeze()
    log.info("workers restart on %s", loaded.source)


def take() -> tuple[Loaded | None, Path | None]:
    """In a worker: what the parent loaded (None in-process) and the shared file (None
    with one worker)."""
    return _loaded, _shared


def _publish_version(outbox_depth: int | None = None) -> None:
    """What the parent tells its workers through the shared file: the bundle version it
    loaded (and, at start, the outbox depth)."""
    if _shared is not None and _loaded is not None:
        shared = coherence.Coherence(_shared)
        shared.parent_version = _loaded.models.version if _loaded.models else 0
        if outbox_depth is not None:
            shared.set_outbox(outbox_depth)
        shared.close()


def _freeze() -> None:
    gc.collect()
    gc.freeze()  # the workers' collections never walk (and so never touch) these pages


def _metrics_dir(data_dir: Path) -> None:
    """A fresh directory for the workers' metric files, chosen before any metric exists
    (prometheus_client picks its value store when the first metric is made)."""
    from prometheus_client import values

    path = data_dir / METRICS_DIR
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
