"""Hub-side data commands: ``catalog import`` and ``crm sync``."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path


def catalog_import(path: Path, data_dir: Path, mapping: str, currency: str) -> int:
    from hub.catalog import import_file, parse_mapping

    try:
        fields = parse_mapping(mapping)
    except ValueError as e:
        print(f"p13n catalog import: {e}", file=sys.stderr)
        return 2
    try:
        report = import_file(path, data_dir, fields, currency.upper(), os.environ.get("P13N_HUB_DATABASE_URL", ""))
    except (OSError, ValueError) as e:
        print(f"p13n catalog import: {e}", file=sys.stderr)
        return 1
    _audit(data_dir, "catalog.import", str(path), {"imported": report.imported, "skipped": dict(report.skipped)})
    print(json.dumps({"imported": report.imported, "skipped": dict(report.skipped)}))
    return 0


def _audit(data_dir: Path, action: str, target: str, detail: dict[str, object]) -> None:
    from hub.audit import audit_local
    from hub.settings import HubSettings

    settings = HubSettings.from_env({**os.environ, "P13N_HUB_DATA_DIR": str(data_dir)})
    audit_local(settings, action, target, 200, detail)


def crm_sync(config_path: Path, data_dir: Path) -> int:
    from hub.crm import CrmConfig, CrmError, CrmSync
    from hub.pii import PiiCipher
    from hub.settings import HubSettings
    from hub.storage import open_store
    from models.erasure import Tokenizer

    try:
        config = CrmConfig.from_json(json.loads(config_path.read_text()))
    except (OSError, ValueError) as e:
        print(f"p13n crm sync: {e}", file=sys.stderr)
        return 2
    settings = HubSettings.from_env(os.environ)
    try:
        cipher = PiiCipher.from_settings(settings.pii_keys, settings.pii_keys_file, data_dir)
    except (OSError, ValueError) as e:
        print(f"p13n crm sync: {e}", file=sys.stderr)
        return 2
    storage = open_store(data_dir, settings.database_url)
    storage.tokenizer = Tokenizer(settings.pseudonym_key.encode())
    sync = CrmSync(config, storage, settings.pseudonym_key.encode(), cipher)
    try:
        report = sync.run_once()
    except CrmError as e:
        print(f"p13n crm sync: {e}", file=sys.stderr)
        return 1
    finally:
        sync.close()
        storage.close()
    _audit(data_dir, "crm.sync", str(config_path), asdict(report))
    print(json.dumps(asdict(report)))
    return 0
