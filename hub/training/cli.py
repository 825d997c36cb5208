"""Hub-side commands: ``train``, ``evaluate``, ``bundle verify``, ``keys generate``."""

from __future__ import annotations

import json
import sys
from argparse import Namespace
from pathlib import Path


def _progress(message: str) -> None:
    print(f"[p13n] {message}", file=sys.stderr, flush=True)


def keys_generate(out_dir: Path) -> int:
    from models.bundle import generate_key

    out_dir.mkdir(parents=True, exist_ok=True)
    private, public = generate_key()
    priv = out_dir / "bundle-signing.key"
    if priv.exists():
        print(f"p13n keys generate: {priv} exists; refusing to overwrite a signing key", file=sys.stderr)
        return 1
    priv.touch(mode=0o600)
    priv.write_bytes(private)
    (out_dir / "bundle-signing.pub").write_bytes(public)
    print(f"wrote {priv} (keep secret) and {out_dir / 'bundle-signing.pub'} (give to edges)")
    return 0


def encoder_install(source: Path | None, directory: Path | None) -> int:
    from models.sentence_encoder import EncoderUnavailable, default_dir, install

    dest = directory or default_dir()
    try:
        manifest = install(dest, source)
    except ImportError as e:
        print(f"p13n encoder install: {e}; install the training extra: pip install 'p13n[train]'", file=sys.stderr)
        return 1
    except (EncoderUnavailable, OSError, ValueError) as e:
        print(f"p13n encoder install: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"installed": str(dest), **manifest}))
    return 0


def bundle_verify(bundle: Path, public_key: Path) -> int:
    from models.bundle import BundleRejected, load_public_key, open_bundle

    try:
        opened = open_bundle(bundle.read_bytes(), load_public_key(public_key.read_bytes()))
    except BundleRejected as e:
        print(json.dumps({"ok": False, "reason": e.reason, "detail": e.detail}))
        return 1
    except (OSError, ValueError) as e:
        print(json.dumps({"ok": False, "reason": "unreadable", "detail": str(e)}))
        return 1
    m = opened.manifest
    print(
        json.dumps(
            {
                "ok": True,
                "version": m["version"],
                "created": m["created"],
                "feature_spec_hash": m["feature_spec_hash"],
                "files": sorted(m["files"]),
                # what the edge recommends sessions with
                "recommender": m.get("models", {}).get("recommender", "als"),
            }
        )
    )
    return 0


def _event_weights(path: Path | None) -> dict[str, float] | None:
    if path is None:
        return None
    doc = json.loads(path.read_text())
    if not isinstance(doc, dict) or not all(isinstance(v, (int, float)) and v > 0 for v in doc.values()):
        raise ValueError(f'{path}: expected an object of positive numbers, e.g. {{"view": 1, "purchase": 8}}')
    return {str(k).lower(): float(v) for k, v in doc.items()}


def _segment_kinds(value: str) -> tuple[str, ...]:
    from models.clusters import ALL_KINDS

    kinds = tuple(k.strip().lower() for k in value.split(",") if k.strip())
    unknown = [k for k in kinds if k not in ALL_KINDS]
    if unknown or not kinds:
        raise ValueError(f"--segment-kinds: expected some of {', '.join(ALL_KINDS)}, got {value!r}")
    return kinds


def _from_hub(a: Namespace) -> int:
    """``train --from-hub``: one turn of the learning loop (hub.training.cycle)."""
    from datetime import UTC, datetime

    from hub.settings import HubSettings
    from hub.storage import StoreUnreadable, open_store
    from hub.training.cycle import CycleConfig, run_cycle
    from hub.training.from_hub import HubDataRules
    from models.erasure import Tokenizer
    from models.weights import EVENT_WEIGHTS

    try:
        settings = HubSettings.for_data_dir(a.data_dir)
        if not settings.database_url and not (settings.data_dir / "warehouse.sqlite").is_file():
            raise ValueError(f"no warehouse under {settings.data_dir} (give the hub's --data-dir, or P13N_HUB_DATABASE_URL)")
        champion = a.champion.read_bytes() if a.champion else None
        if a.push:
            live = _live_from_hub(a)
            if isinstance(live, int):
                return live
            champion = champion if champion is not None else live[0]
            a.version = a.version or live[1]
        config = CycleConfig(
            out_dir=a.out,
            key_file=a.key,
            rules=HubDataRules(
                window_days=a.window_days,
                half_life_days=a.half_life_days,
                event_weights=_event_weights(a.event_weights) or dict(EVENT_WEIGHTS),
                min_interactions=a.min_interactions,
                min_subjects=a.min_subjects,
                min_items=a.min_items,
            ),
            holdout_days=a.holdout_days,
            tolerance=a.tolerance,
            gate_min_users=a.gate_min_users,
            templates=a.templates,
            k=a.k,
            seed=a.seed,
            tune=not a.no_tune,
            segment_kinds=_segment_kinds(a.segment_kinds),
            version=a.version,
            force=a.force,
            encoder=a.encoder,
        )
        store = open_store(settings.data_dir, settings.database_url)
        store.tokenizer = Tokenizer(settings.pseudonym_key.encode())
        try:
            result = run_cycle(store, config, champion, datetime.now(UTC), _progress)
        finally:
            store.close()
    except StoreUnreadable as e:
        print(f"p13n train: the warehouse cannot be read ({e}); nothing was trained, the live bundle stays", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"p13n train: {e}", file=sys.stderr)
        return 1
    if a.push and result.outcome in ("passed", "forced"):
        from hub.admin_client import call, fail

        query = "?forced=true" if result.outcome == "forced" else ""
        status, body = call(
            a, "POST", "/v1/bundles" + query, Path(result.bundle_path).read_bytes(), "application/x-tar", timeout=300
        )
        if status not in (200, 201):
            print(json.dumps(result.as_dict()))
            return fail("train --push", status, body)
        result.reason += f"; pushed as v{body['version']}"
    print(json.dumps(result.as_dict()))
    if result.outcome in ("skipped", "rejected"):
        print(f"p13n train: {result.outcome}: {result.reason}; the live bundle stays", file=sys.stderr)
    return {"passed": 0, "forced": 0, "skipped": 3, "rejected": 4}[result.outcome]


def _live_from_hub(a: Namespace) -> tuple[bytes | None, int] | int:
    """(the live bundle's bytes or None, the next free version) from the hub's API, or
    the exit status of a failed call."""
    from hub.admin_client import call, fail

    status, listing = call(a, "GET", "/v1/bundles")
    if status != 200:
        return fail("train --push", status, listing)
    current = listing.get("current")
    if not current:
        return None, int(listing["next_version"])
    status, data = call(a, "GET", f"/v1/bundles/{int(current['version'])}", raw=True, timeout=120)
    if status != 200:
        return fail("train --push", status, data)
    return data, int(listing["next_version"])


def train(a: Namespace) -> int:
    from hub.training.train import TrainConfig, run_training

    if a.version is not None and a.version < 1:
        print(f"p13n train: --version must be 1 or more, got {a.version}", file=sys.stderr)
        return 2
    sources = sum(bool(x) for x in (a.from_hub, a.generate, a.interactions))
    if sources != 1:
        print("p13n train: give one of --from-hub, --interactions FILE or --generate", file=sys.stderr)
        return 2
    if a.from_hub:
        return _from_hub(a)
    try:
        labels = json.loads(Path(a.cluster_labels).read_text()) if a.cluster_labels else {}
        config = TrainConfig(
            out_dir=a.out,
            key_file=a.key,
            interactions=a.interactions,
            items=a.items,
            profiles=a.profiles,
            templates=a.templates,
            generate=a.generate,
            k=a.k,
            seed=a.seed,
            cluster_labels=labels,
            event_weights=_event_weights(a.event_weights),
            tune=not a.no_tune,
            segment_kinds=_segment_kinds(a.segment_kinds),
            version=a.version,
            encoder=a.encoder,
        )
        result = run_training(config, _progress)
    except (OSError, ValueError) as e:
        print(f"p13n train: {e}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "bundle": str(result.bundle_path),
                "version": result.version,
                "report": str(result.report_path),
                "html": str(result.html_path),
            }
        )
    )
    return 0


def evaluate(a: Namespace) -> int:
    from hub.training.evaluate import run
    from models.sentence_encoder import EncoderUnavailable, SentenceEncoder, load

    if (a.train is None) != (a.test is None):
        print("p13n evaluate: --train and --test go together", file=sys.stderr)
        return 2
    encoder: SentenceEncoder | None = None
    if a.protocol == "cold-start":
        try:
            encoder = load(a.encoder)
        except EncoderUnavailable as e:
            if a.encoder is not None:  # asked for by name: say why it cannot be used
                print(f"p13n evaluate: {e}", file=sys.stderr)
                return 1
            _progress("no sentence encoder installed: the cold-start protocol runs without the semantic model")
    try:
        report = run(
            a.interactions,
            a.items,
            a.split,
            a.ratio,
            a.seed,
            a.k,
            train_file=a.train,
            test_file=a.test,
            recommendations_out=a.recommendations_out,
            progress=_progress,
            event_weights=_event_weights(a.event_weights),
            protocol=a.protocol,
            stacked=a.stacked,
            encoder=encoder,
        )
        if a.html is not None:
            from hub.training.report import write_evaluation_html

            write_evaluation_html(report, a.html)
    except (OSError, ValueError) as e:
        print(f"p13n evaluate: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=1))
    return 0


def bundle_repack(a: Namespace) -> int:
    from hub.training.repack import repack
    from models.bundle import BundleRejected

    try:
        done = repack(a.file, a.public_key, a.key, a.templates, a.out or a.file.parent, a.version)
    except (BundleRejected, OSError, ValueError) as e:
        print(f"p13n bundle repack: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"bundle": str(done.path), "version": done.version, "models_from": done.from_version}))
    return 0
