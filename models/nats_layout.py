"""Names of every NATS stream, bucket and subject (one source for hub and edges)."""

from __future__ import annotations

EVENTS_STREAM = "P13N_EVENTS"
EVENTS_SUBJECT_PREFIX = "p13n.events"
ERASURE_STREAM = "P13N_ERASURE"
ERASURE_ORDERS_SUBJECT = "p13n.erasure.orders"
ERASURE_ACKS_PREFIX = "p13n.erasure.acks"
STATUS_PREFIX = "p13n.edges.status"
PROFILES_BUCKET = "p13n_profiles"
CONTROL_BUCKET = "p13n_control"
MODELS_BUCKET = "p13n_models"
CURRENT_BUNDLE_KEY = "bundle.current"

#: The event buffer keeps at most this long; it is a buffer, not storage (seconds).
EVENTS_MAX_AGE_S = 7 * 24 * 3600
#: Publishes carrying the same Nats-Msg-Id within this window are stored once (seconds).
EVENTS_DUPLICATE_WINDOW_S = 2 * 3600
#: Erasure orders are kept this long for edges that were offline (seconds).
ERASURE_MAX_AGE_S = 90 * 24 * 3600


def events_subject(edge_id: str) -> str:
    return f"{EVENTS_SUBJECT_PREFIX}.{edge_id}"


def status_subject(edge_id: str) -> str:
    return f"{STATUS_PREFIX}.{edge_id}"


def erasure_ack_subject(edge_id: str) -> str:
    return f"{ERASURE_ACKS_PREFIX}.{edge_id}"
