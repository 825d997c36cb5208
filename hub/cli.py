"""Hub-side commands: ``hub serve``."""

from __future__ import annotations

import sys


def serve() -> int:
    from hub.app import create_app
    from hub.settings import HubSettings
    from models.serve import run_asgi
    from models.settings_base import SettingsError

    try:
        settings = HubSettings.from_env()
    except SettingsError as e:
        print(f"p13n hub serve: invalid setting {e}", file=sys.stderr)
        return 2
    run_asgi(create_app(settings), settings.listen[0], settings.listen[1], settings.log_level)
    return 0
