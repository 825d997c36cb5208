"""ASGI factory for servers: ``hub.asgi:app_from_env``."""

from __future__ import annotations

from starlette.applications import Starlette

from hub.app import create_app
from hub.settings import HubSettings
from models import logs
from models.process import die_with_parent


def app_from_env() -> Starlette:
    die_with_parent()  # an orphaned worker must not outlive a killed server
    settings = HubSettings.from_env()
    logs.configure(settings.log_format, "hub")
    return create_app(settings)
