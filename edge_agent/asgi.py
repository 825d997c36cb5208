"""ASGI factory for servers: ``edge_agent.asgi:app_from_env``."""

from __future__ import annotations

from edge_agent.app import EdgeApp, create_app
from edge_agent.settings import EdgeSettings


def app_from_env() -> EdgeApp:
    return create_app(EdgeSettings.from_env())
