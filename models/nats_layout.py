"""Names of every NATS stream, bucket and subject (one source for hub and edges)."""

from __future__ import annotations

EVENTS_STREAM = "P13N_EVENTS"
EVENTS_SUBJECT_PREFIX = "p13n.events"
ERASURE_STREAM = "P13N_ERASURE"
#: Event messages the hub could not store after :data:`MAX_EVENT_DELIVERIES` attempts.
DEAD_LETTER_STREAM = "P13N_DEAD_LETTERS"
DEAD_LETTER_PREFIX = "p13n.deadletter.events"
ERASURE_ORDERS_SUBJECT = "p13n.erasure.orders"
ERASURE_ACKS_PREFIX = "p13n.erasure.acks"
STATUS_PREFIX = "p13n.edges.status"
PROFILES_BUCKET = "p13n_profiles"
CONTROL_BUCKET = "p13n_control"
MODELS_BUCKET = "p13n_models"
CURRENT_BUNDLE_KEY = "bundle.current"
#: A bandit slot's weights live under this prefix + its seed in the control bucket.
BANDIT_KEY_PREFIX = "bandit."
#: The JetStream stream behind the control bucket (what direct gets read).
CONTROL_STREAM = f"KV_{CONTROL_BUCKET}"
#: Each edge's durable consumer of erasure orders is this prefix + the edge id.
ERASURE_CONSUMER_PREFIX = "erasure-"

#: The event buffer keeps at most this long; it is a buffer, not storage (seconds).
EVENTS_MAX_AGE_S = 7 * 24 * 3600
#: Publishes carrying the same Nats-Msg-Id within this window are stored once (seconds).
EVENTS_DUPLICATE_WINDOW_S = 2 * 3600
#: An event message is delivered to the hub at most this many times; then it goes to
#: the dead-letter stream with the reason (it never blocks the consumer).
MAX_EVENT_DELIVERIES = 5
#: Dead-lettered event messages are kept this long for inspection and replay (seconds).
DEAD_LETTER_MAX_AGE_S = 30 * 24 * 3600
#: Erasure orders are kept this long for edges that were offline (seconds).
ERASURE_MAX_AGE_S = 90 * 24 * 3600


def control_subject(key: str) -> str:
    """The subject a control-bucket key is stored under."""
    return f"$KV.{CONTROL_BUCKET}.{key}"


def events_subject(edge_id: str) -> str:
    return f"{EVENTS_SUBJECT_PREFIX}.{edge_id}"


def dead_letter_subject(edge_id: str) -> str:
    return f"{DEAD_LETTER_PREFIX}.{edge_id}"


def status_subject(edge_id: str) -> str:
    return f"{STATUS_PREFIX}.{edge_id}"


def erasure_ack_subject(edge_id: str) -> str:
    return f"{ERASURE_ACKS_PREFIX}.{edge_id}"


def erasure_consumer(edge_id: str) -> str:
    """The durable consumer through which ``edge_id`` reads erasure orders (made by the hub)."""
    return ERASURE_CONSUMER_PREFIX + edge_id


def edge_inbox_prefix(edge_id: str) -> str:
    """Reply subjects of ``edge_id`` start with this: an edge may subscribe to its own
    replies only, never to ``_INBOX.>`` (where the hub's fetched events arrive)."""
    return f"_INBOX_{edge_id}"
