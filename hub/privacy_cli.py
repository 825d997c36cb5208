"""Privacy commands: ``erase``, ``subject export``, ``erasure status``, ``audit verify``,
``tokens``, ``keys pii``, ``pii rekey`` and ``retention run``.

``erase``/``subject export``/``erasure status`` are clients of the hub's admin API (so
they are authorised, audited and reach the edges); ``audit verify``, ``pii rekey`` and
``retention run`` work on the hub's data directory directly (for auditors, key
rotation and cron), reading the same ``P13N_HUB_*`` settings as the hub; the two that
change data append an audit entry (actor ``cli:<user>``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hub.admin_client import api_args
from hub.admin_client import call as _call
from hub.admin_client import fail as _fail


def add_commands(sub: Any) -> None:
    erase = sub.add_parser("erase", help="erase a data subject everywhere (hub tiers, profiles, every edge)")
    erase.add_argument("subject", help="raw user id, pseudonym (p1_…) or visitor id")
    erase.add_argument("--wait", type=float, default=0.0, metavar="S", help="wait up to S seconds for every edge")
    api_args(erase)

    subject = sub.add_parser("subject", help="data subject requests")
    subject_sub = subject.add_subparsers(dest="subject_command", required=True, metavar="SUBCOMMAND")
    export = subject_sub.add_parser("export", help="export everything held about a subject (access request)")
    export.add_argument("subject")
    export.add_argument("--out", type=Path, default=None, help="write the JSON here (default: stdout)")
    api_args(export)

    erasure = sub.add_parser("erasure", help="erasure requests")
    erasure_sub = erasure.add_subparsers(dest="erasure_command", required=True, metavar="SUBCOMMAND")
    status = erasure_sub.add_parser("status", help="an erasure request's status per edge")
    status.add_argument("request_id")
    api_args(status)

    audit = sub.add_parser("audit", help="audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")
    verify = audit_sub.add_parser("verify", help="check the audit log's hash chain (exit 1 when tampered)")
    verify.add_argument("--data-dir", type=Path, default=None, help="the hub's data directory (P13N_HUB_DATA_DIR)")
    verify.add_argument("--head", default="", metavar="SEQ:HASH", help="a head recorded earlier, to detect truncation")

    tokens = sub.add_parser("tokens", help="admin API tokens")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True, metavar="SUBCOMMAND")
    create = tokens_sub.add_parser("create", help="add a token with a role; prints it once")
    create.add_argument("--file", type=Path, required=True, help="the tokens file (P13N_HUB_TOKENS_FILE)")
    create.add_argument("--name", required=True)
    create.add_argument("--role", required=True, help="viewer, analyst, operator, privacy_officer or admin")
    revoke = tokens_sub.add_parser("revoke", help="remove a token by name (the hub notices within a second)")
    revoke.add_argument("--file", type=Path, required=True)
    revoke.add_argument("--name", required=True)
    for p in (create, revoke):  # where the change is audited
        p.add_argument("--data-dir", type=Path, default=None, help="the hub's data directory (P13N_HUB_DATA_DIR)")

    pii = sub.add_parser("pii", help="PII encryption at rest")
    pii_sub = pii.add_subparsers(dest="pii_command", required=True, metavar="SUBCOMMAND")
    rekey = pii_sub.add_parser("rekey", help="re-encrypt every PII value with the first key of the ring")
    rekey.add_argument("--data-dir", type=Path, default=None)

    retention = sub.add_parser("retention", help="data retention")
    retention_sub = retention.add_subparsers(dest="retention_command", required=True, metavar="SUBCOMMAND")
    run = retention_sub.add_parser("run", help="apply the retention policy once (P13N_HUB_RETENTION_* settings)")
    run.add_argument("--data-dir", type=Path, default=None)
    run.add_argument("--now", default="", help="ISO time to apply the policy as of (default: now)")


def _settings(data_dir: Path | None) -> Any:
    from hub.settings import HubSettings

    return HubSettings.for_data_dir(data_dir)


def dispatch(args: argparse.Namespace) -> int:
    c = args.command
    if c == "erase":
        status, body = _call(args, "DELETE", "/v1/subjects/" + quote(args.subject, safe=""))
        if status != 202:
            return _fail("erase", status, body)
        deadline = time.monotonic() + args.wait
        while body.get("status") != "completed" and time.monotonic() < deadline:
            time.sleep(0.2)
            status, body = _call(args, "GET", "/v1/erasures/" + body["request_id"])
            if status != 200:
                return _fail("erase", status, body)
        print(json.dumps(body, indent=1))
        return 0 if body.get("status") == "completed" or not args.wait else 3
    if c == "subject":
        status, body = _call(args, "GET", "/v1/subjects/" + quote(args.subject, safe=""))
        if status != 200:
            return _fail("subject export", status, body)
        text = json.dumps(body, indent=1, ensure_ascii=False)
        if args.out:
            args.out.write_text(text + "\n", encoding="utf-8")
        else:
            print(text)
        return 0
    if c == "erasure":
        status, body = _call(args, "GET", "/v1/erasures/" + quote(args.request_id, safe=""))
        if status != 200:
            return _fail("erasure status", status, body)
        print(json.dumps(body, indent=1))
        return 0
    if c == "audit":
        return _audit_verify(args)
    if c == "tokens":
        return _tokens(args)
    if c == "pii":
        return _rekey(args)
    if c == "retention":
        return _retention(args)
    return 2


def _audit_local(settings: Any, action: str, status: int, detail: dict[str, Any]) -> None:
    from hub.audit import audit_local

    audit_local(settings, action, str(settings.data_dir), status, detail)


def _audit_verify(args: argparse.Namespace) -> int:
    from hub.audit import verify

    settings = _settings(args.data_dir)
    expect = None
    if args.head:
        seq, _, digest = args.head.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            print("p13n audit verify: --head takes SEQ:HASH (as printed by an earlier verify)", file=sys.stderr)
            return 2
        expect = (int(seq), digest)
    report = verify(settings.data_dir / "audit.sqlite", settings.audit_secret, expect)
    print(
        json.dumps(
            {
                "ok": report.ok,
                "entries": report.entries,
                "head": f"{report.head_seq}:{report.head_hash}",
                "problems": report.problems,
            }
        )
    )
    return 0 if report.ok else 1


def _tokens(args: argparse.Namespace) -> int:
    from hub.audit import audit_local
    from hub.auth import create_token, revoke_token

    settings = _settings(args.data_dir)
    if args.tokens_command == "create":
        try:
            token = create_token(args.file, args.name, args.role)
        except ValueError as e:
            print(f"p13n tokens create: {e}", file=sys.stderr)
            return 2
        audit_local(settings, "tokens.create", str(args.file), 200, {"name": args.name, "role": args.role})
        print(token)
        return 0
    if not revoke_token(args.file, args.name):
        print(f"p13n tokens revoke: no token named {args.name!r}", file=sys.stderr)
        return 1
    audit_local(settings, "tokens.revoke", str(args.file), 200, {"name": args.name})
    return 0


def _rekey(args: argparse.Namespace) -> int:
    from hub.pii import PiiCipher
    from hub.storage import open_store

    settings = _settings(args.data_dir)
    try:
        cipher = PiiCipher.from_settings(settings.pii_keys, settings.pii_keys_file, settings.data_dir)
    except (OSError, ValueError) as e:
        print(f"p13n pii rekey: {e}", file=sys.stderr)
        return 2
    store = open_store(settings.data_dir, settings.database_url)
    try:
        report = store.rekey(cipher)
    finally:
        store.close()
    for error in report.errors:
        print(f"p13n pii rekey: {error}", file=sys.stderr)
    result = {
        "reencrypted": report.reencrypted,
        "failed": report.failed,
        "sealed_reencrypted": report.sealed_reencrypted,
        "active_key": report.active_key,
    }
    _audit_local(settings, "pii.rekey", 200 if not report.failed else 500, result)
    print(json.dumps(result))
    return 0 if not report.failed else 1


def _retention(args: argparse.Namespace) -> int:
    from hub import retention
    from hub.storage import open_store

    settings = _settings(args.data_dir)
    try:
        now = datetime.fromisoformat(args.now.replace("Z", "+00:00")) if args.now else datetime.now(UTC)
    except ValueError:
        print("p13n retention run: --now takes an ISO time, e.g. 2027-01-31T00:00:00Z", file=sys.stderr)
        return 2
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    policy = retention.RetentionPolicy(
        settings.retention_lake_days,
        settings.retention_warehouse_days,
        settings.retention_dead_letter_days,
        settings.retention_consent_days,
    )
    store = open_store(settings.data_dir, settings.database_url)
    try:
        deleted = retention.run(store, policy, now)
    finally:
        store.close()
    _audit_local(settings, "retention.run", 200, {"as_of": now.isoformat(), "deleted": deleted})
    print(json.dumps({"as_of": now.isoformat(), "deleted": deleted}))
    return 0
