"""ASGI factory for servers: ``hub.asgi:app_from_env``."""

from __future__ import annotations

from starlette.applications import Starlette

from hub.app import create_app
from hub.settings import HubSettings


def app_from_env() -> Starlette:
    return create_app(HubSettings.from_env())
