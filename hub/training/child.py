"""The hub's training run in a child process: the hub calls :func:`run` through a
one-worker spawn pool, so model fitting never holds the hub's event loop or loads the
training libraries into the serving process. Progress goes to a log file the API
reads while the run lasts."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from hub.storage import open_store
from hub.training.cycle import CycleConfig, run_cycle
from hub.training.from_hub import HubDataRules
from models.erasure import Tokenizer

log = logging.getLogger(__name__)


def run(
    data_dir: str, database_url: str, pseudonym_key: str, config: dict[str, Any], champion: bytes | None, progress: str, now: str
) -> dict[str, Any]:
    """One cycle (``config``: CycleConfig's fields, plain values); the result as a dict."""
    path = Path(progress)
    path.parent.mkdir(parents=True, exist_ok=True)

    def say(message: str) -> None:
        with path.open("a", encoding="utf-8") as f:
            f.write(f"{datetime.now().astimezone().isoformat(timespec='seconds')} {message}\n")

    fields = dict(config)
    fields["rules"] = HubDataRules(**fields["rules"])
    fields["out_dir"] = Path(fields["out_dir"])
    fields["key_file"] = Path(fields["key_file"])
    fields["templates"] = Path(fields["templates"]) if fields.get("templates") else None
    fields["encoder"] = Path(fields["encoder"]) if fields.get("encoder") else None
    store = open_store(Path(data_dir), database_url)
    store.tokenizer = Tokenizer(pseudonym_key.encode())
    try:
        result = run_cycle(store, CycleConfig(**fields), champion, datetime.fromisoformat(now), say)
    finally:
        store.close()
    say(f"done: {result.outcome}: {result.reason}")
    return result.as_dict()
