"""ASGI factory for servers: ``edge_agent.asgi:app_from_env``."""

from __future__ import annotations

from edge_agent.app import EdgeApp, create_app
from edge_agent.settings import EdgeSettings
from models import logs
from models.process import die_with_parent


def app_from_env() -> EdgeApp:
    die_with_parent()  # an orphaned worker must not outlive a killed server
    settings = EdgeSettings.from_env()
    logs.configure(settings.log_format, "edge", {"edge_id": settings.edge_id})
    return create_app(settings)
