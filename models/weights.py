"""Interaction weight per event type: one table for training, live sessions and marts."""

from __future__ import annotations

#: Default confidence weight per event type (training can override it per run).
EVENT_WEIGHTS: dict[str, float] = {"page_view": 1.0, "view": 1.0, "click": 2.0, "add_to_cart": 4.0, "purchase": 8.0}
