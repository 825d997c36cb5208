"""ASGI factory for servers: ``edge_agent.asgi:app_from_env``."""

from __future__ import annotations

from starlette.applications import Starlette

from edge_agent.app import create_app
from edge_agent.settings import EdgeSettings


def app_from_env() -> Starlette:
    return create_app(EdgeSettings.from_env())
