"""Create the hub's JetStream streams, KV buckets and object store, idempotently.

Run at every hub start: a missing resource is created, an existing one is updated
to the declared configuration (so upgrades converge), nothing is ever deleted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from models import nats_layout as L

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayoutReport:
    created: tuple[str, ...]
    updated: tuple[str, ...]


def stream_configs(replicas: int = 1) -> list[StreamConfig]:
    """The layout's streams, each kept on ``replicas`` servers of a cluster."""
    return [
        StreamConfig(
            name=L.EVENTS_STREAM,
            description="Event batches from edges (work queue; the hub acks after commit)",
            subjects=[f"{L.EVENTS_SUBJECT_PREFIX}.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=L.EVENTS_MAX_AGE_S,
            duplicate_window=L.EVENTS_DUPLICATE_WINDOW_S,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=L.DEAD_LETTER_STREAM,
            description="Event messages the hub could not store after the delivery bound, with the reason (for replay)",
            subjects=[f"{L.DEAD_LETTER_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=L.DEAD_LETTER_MAX_AGE_S,
            duplicate_window=L.EVENTS_DUPLICATE_WINDOW_S,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=L.ERASURE_STREAM,
            description="Erasure orders for every edge (one durable consumer per edge) and their acknowledgements",
            subjects=[L.ERASURE_ORDERS_SUBJECT, f"{L.ERASURE_ACKS_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=L.ERASURE_MAX_AGE_S,
            num_replicas=replicas,
        ),
    ]


def profiles_stream_config(replicas: int = 1) -> StreamConfig:
    """The profiles KV bucket's stream, declared here rather than by ``create_key_value``:
    the same settings a KV bucket gets, except that single messages may be deleted, so
    an erasure removes a profile with the server's secure erase and leaves no purge
    marker (whose subject would be the key) behind."""
    return StreamConfig(
        name=f"KV_{L.PROFILES_BUCKET}",
        description="Consented profiles by subject (KV bucket; erasable message by message)",
        subjects=[f"$KV.{L.PROFILES_BUCKET}.>"],
        allow_direct=True,
        allow_rollup_hdrs=True,
        deny_delete=False,
        discard=DiscardPolicy.NEW,
        max_msgs_per_subject=1,
        max_msgs=-1,
        max_consumers=-1,
        num_replicas=replicas,
        storage=StorageType.FILE,
        duplicate_window=120,
    )


async def ensure_layout(js: JetStreamContext, replicas: int = 1) -> LayoutReport:
    """Create or update every stream and bucket of the layout, each on ``replicas``
    servers (``P13N_HUB_NATS_REPLICAS``); report what changed. A stream created with
    fewer replicas is scaled up in place; buckets get theirs when created."""
    created: list[str] = []
    updated: list[str] = []
    for cfg in stream_configs(replicas):
        assert cfg.name is not None
        try:
            await js.stream_info(cfg.name)
        except NotFoundError:
            await js.add_stream(cfg)
            created.append(cfg.name)
        else:
            try:
                await js.update_stream(cfg)
                updated.append(cfg.name)
            except BadRequestError as e:  # e.g. retention cannot change in place
                log.error("stream %s differs from the declared layout and cannot be updated: %s", cfg.name, e)
    try:
        await js.stream_info(f"KV_{L.PROFILES_BUCKET}")
    except NotFoundError:
        await js.add_stream(profiles_stream_config(replicas))
        created.append(L.PROFILES_BUCKET)
    for kv in (
        KeyValueConfig(
            bucket=L.CONTROL_BUCKET, description="Control keys (bundle.current)", history=16, direct=True, replicas=replicas
        ),
    ):
        try:
            await js.key_value(kv.bucket)
        except (NotFoundError, BadRequestError):
            await js.create_key_value(kv)
            created.append(kv.bucket)
    try:
        await js.object_store(L.MODELS_BUCKET)
    except (NotFoundError, BadRequestError):
        await js.create_object_store(
            L.MODELS_BUCKET, config=ObjectStoreConfig(description="Signed model bundles", replicas=replicas)
        )
        created.append(L.MODELS_BUCKET)
    # edges read these with direct gets only (docs/SECURITY.md); older layouts lack it;
    # a deployment that grew into a cluster scales them up to its replica count
    for name in (f"KV_{L.PROFILES_BUCKET}", f"KV_{L.CONTROL_BUCKET}", f"OBJ_{L.MODELS_BUCKET}"):
        if await _converge_bucket(js, name, replicas):
            updated.append(name)
    return LayoutReport(tuple(created), tuple(updated))


async def _converge_bucket(js: JetStreamContext, stream: str, replicas: int) -> bool:
    """Direct gets on and ``replicas`` copies for a bucket's ``stream``; True when it
    had to be changed."""
    info = await js.stream_info(stream)
    if info.config.allow_direct and info.config.num_replicas == replicas:
        return False
    await js.update_stream(info.config.evolve(allow_direct=True, num_replicas=replicas))
    return True
