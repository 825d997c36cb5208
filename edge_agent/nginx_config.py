"""``p13n nginx-config``: a ready nginx ``server`` block for either mode (sans-IO).

SSI mode: nginx fetches shells from the origin and processes SSI; one
``auth_request`` per page asks the agent for the page's context and visitor cookie
(forwarded with ``auth_request_set``/``add_header``, since nginx drops ``Set-Cookie``
from SSI subrequests); each slot is an ``include virtual`` with a stub fallback. If
the agent is down or slow, the auth location turns the error into 204 and the
includes print their stubs: the page still renders.

Filter mode: pages go to the agent, which rewrites them; if the agent fails nginx
serves the origin page directly (``<p13n-slot>`` is an unknown element, so browsers
show its fallback children).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from edge_agent.shared_fragments import CLASS_COOKIE
from edge_agent.ssi_compile import slot_variable
from models.consent import CONSENT_COOKIE

#: Static files bypass the agent in both modes.
STATIC_EXTENSIONS = (
    "css",
    "js",
    "mjs",
    "map",
    "png",
    "jpg",
    "jpeg",
    "gif",
    "svg",
    "webp",
    "avif",
    "ico",
    "woff",
    "woff2",
    "ttf",
    "otf",
    "txt",
    "xml",
    "pdf",
    "mp4",
    "webm",
)
MODES = ("ssi", "filter")


class ConfigError(ValueError):
    """An nginx-config option is invalid; ``option`` names it."""

    def __init__(self, option: str, problem: str) -> None:
        self.option = option
        super().__init__(f"{option}: {problem}")


#: Where SSI mode caches shells unless ``--cache-path`` says otherwise.
DEFAULT_CACHE_DIR = "/var/cache/nginx/p13n"
_SAFE_PATH = re.compile(r"[A-Za-z0-9/._-]+")
#: A fixed country for every request of this edge node (``--geo-header '"fr"'``).
_FIXED_COUNTRY = re.compile(r'"[A-Za-z]{2}"')


@dataclass(frozen=True)
class NginxOptions:
    mode: str
    agent: str  # HOST:PORT
    origin: str  # http://HOST:PORT
    listen: str = "80"
    server_name: str = "_"
    geo_header: str = ""  # e.g. "$http_cf_ipcountry" → sent to the agent as X-Geo-Country
    #: nginx variable with the logged-in user's id from the site's auth layer, e.g.
    #: ``$auth_user`` set by ``auth_request_set`` → sent to the agent as X-User-Id
    user_id_from: str = ""
    agent_timeout_ms: int = 50
    auth_timeout_ms: int = 30
    #: SSI mode: a slot's fragment not answered in this long prints the slot's stub
    slot_timeout_ms: int = 250
    cookie_name: str = "p13n_id"
    cache_dir: str = "/var/cache/nginx/p13n"  # SSI mode: shells cached per origin Cache-Control (--cache-path)
    #: SSI one-round-trip mode: the slots decided by the auth call and echoed by nginx
    echo_slots: tuple[str, ...] = ()

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ConfigError("--mode", f"expected one of {MODES}, got {self.mode!r}")
        host, sep, port = self.agent.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError("--agent", f"expected HOST:PORT, got {self.agent!r}")
        parts = urlsplit(self.origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ConfigError("--origin", f"expected http(s)://HOST[:PORT], got {self.origin!r}")
        if self.echo_slots and self.mode != "ssi":
            raise ConfigError("--echo-slots", "only applies to --mode ssi")
        if not self.cookie_name.replace("_", "").isalnum():
            raise ConfigError("--cookie-name", f"letters, digits and '_' only, got {self.cookie_name!r}")
        for flag, value in (("--geo-header", self.geo_header), ("--user-id-from", self.user_id_from)):
            fixed_country = flag == "--geo-header" and _FIXED_COUNTRY.fullmatch(value) is not None
            if value and not fixed_country and not (value.startswith("$") and value[1:].replace("_", "").isalnum()):
                raise ConfigError(flag, f"expected an nginx variable such as $http_cf_ipcountry, got {value!r}")
        if not (self.cache_dir.startswith("/") and _SAFE_PATH.fullmatch(self.cache_dir)):
            raise ConfigError("--cache-path", f"an absolute path of letters, digits and / . _ -, got {self.cache_dir!r}")
        if not 10 <= self.slot_timeout_ms <= 60_000:
            raise ConfigError("--slot-timeout-ms", f"expected 10 to 60000 milliseconds, got {self.slot_timeout_ms}")
        if not (self.listen.isdigit() or ":" in self.listen):
            raise ConfigError("--listen", f"expected PORT or ADDR:PORT, got {self.listen!r}")


def _proxy_common(indent: str) -> str:
    lines = [
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header Host $host;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
    ]
    return "".join(f"{indent}{line}\n" for line in lines)


_EMPTY = '""'  # nginx removes a header set to the empty string


def _agent_headers(indent: str, opts: NginxOptions) -> str:
    # the headers the agent trusts are always set here: a visitor's own copy never
    # reaches it (an empty value removes the header)
    lines = [
        "proxy_set_header X-Request-Id $request_id;",
        "proxy_set_header X-P13N-Page $request_uri;",
        f"proxy_set_header X-Geo-Country {opts.geo_header or _EMPTY};",
        f"proxy_set_header X-User-Id {opts.user_id_from or _EMPTY};",
    ]
    return "".join(f"{indent}{line}\n" for line in lines)


#: The class cookie (edge_agent/shared_fragments.py) and our own consent cookie.
_CLASS = "$cookie_" + CLASS_COOKIE
_CONSENT = "$cookie_" + CONSENT_COOKIE


def _fragment_cache_maps(opts: NginxOptions) -> str:
    """http-level pieces of the shared fragment cache: its zone, the include parameters
    without the page's request id, and whether a request carries a class at all."""
    return (
        f"proxy_cache_path {opts.cache_dir}-fragments levels=1:2 keys_zone=p13n_fragments:10m max_size=64m "
        "inactive=10m use_temp_path=off;\n"
        "map $args $p13n_slot_args {\n"
        '    "~^rid=[^&]*&(?<p13n_rest>.*)$" $p13n_rest;\n'
        '    "~^rid=[^&]*$" "";\n'
        "    default $args;\n"
        "}\n"
        f"map {_CLASS} $p13n_no_class {{\n"
        '    "" 1;\n'
        "    default 0;\n"
        "}\n"
    )


def _fragment_cache(indent: str, opts: NginxOptions) -> str:
    """A slot location's cache: shareable fragments the agent marks cacheable
    (``X-Accel-Expires``) are kept under the slot, its parameters, the visitor's class and
    the request-side inputs (geo, consent cookie, Sec-GPC, DNT), never the visitor;
    everything else the agent answers ``private, no-store`` and nginx does not keep."""
    geo = opts.geo_header if opts.geo_header.startswith("$") else ""  # a fixed country is the same for all
    key = f"$scheme$host$uri?$p13n_slot_args|{_CLASS}|{geo}|{_CONSENT}|$http_sec_gpc|$http_dnt"
    lines = [
        "# shared fragments (docs/SLOTS.md): keyed on the class cookie, never on the visitor",
        "proxy_cache p13n_fragments;",
        f'proxy_cache_key "{key}";',
        "proxy_cache_bypass $p13n_no_class;",
        "proxy_no_cache $p13n_no_class;",
        # no proxy_cache_lock: per-visitor slots share a key too (nginx cannot tell them
        # apart) and are never stored, so their concurrent requests would wait out the
        # lock (measured: p99 251 ms); a concurrent miss of a shareable slot costs one
        # more agent call instead
    ]
    return "".join(f"{indent}{line}\n" for line in lines)


def render_server(opts: NginxOptions) -> str:
    """The ``upstream`` blocks and ``server`` block for ``opts``."""
    opts.validate()
    origin = urlsplit(opts.origin)
    origin_host = origin.netloc
    scheme = origin.scheme
    static_re = "|".join(STATIC_EXTENSIONS)
    i1, i2 = "    ", "        "
    common = _proxy_common(i2)
    agent_hdrs = _agent_headers(i2, opts)
    out = [
        f"# p13n edge personalization, {opts.mode} mode (generated by `p13n nginx-config`)\n",
        "# include inside http { }, e.g. as /etc/nginx/conf.d/p13n.conf\n",
        f"upstream p13n_agent {{\n{i1}server {opts.agent};\n{i1}keepalive 64;\n}}\n",
        f"upstream p13n_origin {{\n{i1}server {origin_host};\n{i1}keepalive 64;\n}}\n",
        "server {\n",
        f"{i1}listen {opts.listen};\n",
        f"{i1}server_name {opts.server_name};\n",
        "\n",
        f"{i1}# static files never touch the agent\n",
        f"{i1}location ~* \\.({static_re})$ {{\n{common}{i2}proxy_pass {scheme}://p13n_origin;\n{i1}}}\n",
        "\n",
        f"{i1}# the agent's metrics are for the operator's scraper on the agent's own port, not for visitors\n",
        f"{i1}location = /_p13n/metrics {{\n{i2}return 404;\n{i1}}}\n",
        f"{i1}# agent endpoints: SDK, collection, fragments, decisions (^~: before the static-file regex)\n",
        f"{i1}location ^~ /_p13n/ {{\n{common}{agent_hdrs}",
        f"{i2}proxy_connect_timeout {opts.agent_timeout_ms}ms;\n",
        f"{i2}proxy_read_timeout 2s;\n",
        f"{i2}proxy_pass http://p13n_agent;\n{i1}}}\n",
    ]
    auth_uri = "/_p13n/auth?slots=" + ",".join(opts.echo_slots) if opts.echo_slots else ""
    if opts.mode == "ssi":
        out.insert(
            2,
            f"proxy_cache_path {opts.cache_dir} levels=1:2 keys_zone=p13n_shells:10m max_size=512m inactive=10m use_temp_path=off;\n"
            + _fragment_cache_maps(opts),
        )
        out += [
            "\n",
            f"{i1}# a slot's fragment: a slow or overloaded agent makes nginx print the slot's stub\n",
            f"{i1}location ^~ /_p13n/slot/ {{\n{common}{agent_hdrs}",
            f"{i2}proxy_connect_timeout {opts.agent_timeout_ms}ms;\n",
            f"{i2}proxy_read_timeout {opts.slot_timeout_ms}ms;\n",
            f"{i2}proxy_send_timeout {opts.slot_timeout_ms}ms;\n",
            _fragment_cache(i2, opts),
            f"{i2}proxy_pass http://p13n_agent;\n{i1}}}\n",
            f"{i1}# one decision per page: context + visitor cookie (fails open to 204)\n",
            f"{i1}location = /_p13n/auth {{\n{i2}internal;\n",
            *(
                [f"{i2}proxy_buffer_size 64k;\n", f"{i2}proxy_buffers 8 64k;\n"]
                if opts.echo_slots
                else [
                    f"{i2}# a returning visitor already has an id: the first fragment builds the context\n",
                    f'{i2}if ($cookie_{opts.cookie_name} ~ "^[A-Za-z0-9_-]{{16,64}}$") {{\n{i2}    return 204;\n{i2}}}\n',
                ]
            ),
            f"{common}{agent_hdrs}",
            f"{i2}proxy_pass_request_body off;\n",
            f'{i2}proxy_set_header Content-Length "";\n',
            f"{i2}proxy_connect_timeout {opts.auth_timeout_ms}ms;\n",
            f"{i2}proxy_read_timeout {max(opts.auth_timeout_ms * 4, 100)}ms;\n",
            f"{i2}proxy_send_timeout {max(opts.auth_timeout_ms * 4, 100)}ms;\n",
            f"{i2}proxy_intercept_errors on;\n",
            f"{i2}error_page 400 401 403 404 500 502 503 504 = @p13n_open;\n",
            f"{i2}proxy_pass http://p13n_agent{auth_uri};\n{i1}}}\n",
            f"{i1}location @p13n_open {{\n{i2}return 204;\n{i1}}}\n",
            "\n",
            f"{i1}location / {{\n",
            f"{i2}ssi on;\n",
            f"{i2}ssi_silent_errors on;\n",
            f"{i2}auth_request /_p13n/auth;\n",
            f"{i2}auth_request_set $p13n_cookie $upstream_http_set_cookie;\n",
            *(
                f"{i2}auth_request_set ${slot_variable(n)} $upstream_http_x_p13n_slot_{n.replace('-', '_').lower()};\n"
                for n in opts.echo_slots
            ),
            f"{i2}add_header Set-Cookie $p13n_cookie;\n",
            f"{i2}proxy_hide_header Cache-Control;\n",
            f"{i2}proxy_hide_header ETag;\n",
            f"{i2}proxy_hide_header Vary;\n",
            f'{i2}add_header Cache-Control "private" always;\n',
            f'{i2}proxy_set_header Accept-Encoding "";\n',
            f"{i2}# shells are shared: cached as the origin's Cache-Control allows (never with Set-Cookie)\n",
            f"{i2}proxy_cache p13n_shells;\n",
            f"{i2}proxy_cache_key $scheme$host$request_uri;\n",
            f"{i2}proxy_cache_lock on;\n",
            f"{i2}proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;\n",
            common,
            f"{i2}proxy_pass {scheme}://p13n_origin;\n",
            f"{i1}}}\n",
        ]
    else:
        out += [
            "\n",
            f"{i1}location / {{\n{common}{agent_hdrs}",
            f"{i2}proxy_connect_timeout {opts.agent_timeout_ms}ms;\n",
            f"{i2}proxy_read_timeout 10s;\n",
            f"{i2}proxy_intercept_errors off;\n",
            f"{i2}error_page 502 504 = @p13n_origin_direct;\n",
            f"{i2}proxy_pass http://p13n_agent;\n{i1}}}\n",
            f"{i1}# agent down: serve the origin page as is (slot fallbacks show)\n",
            f"{i1}location @p13n_origin_direct {{\n{common}",
            f"{i2}proxy_hide_header Cache-Control;\n",
            f'{i2}add_header Cache-Control "private" always;\n',
            f"{i2}proxy_pass {scheme}://p13n_origin;\n{i1}}}\n",
        ]
    out.append("}\n")
    return "".join(out)


def render_main(server_block: str, prefix: str, worker_processes: str = "auto", user: str = "") -> str:
    """A complete ``nginx.conf`` around ``server_block`` with every path under ``prefix``.

    For the demo, tests and benchmarks: ``user`` keeps workers under the account that owns
    ``prefix`` (a root master would otherwise drop them to ``nobody``, who cannot write
    the shell cache there). Production installs use the distribution's nginx.conf.
    """
    return (
        (f"user {user};\n" if user else "") + f"worker_processes {worker_processes};\n"
        f"pid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        "    access_log off;\n"
        "    default_type application/octet-stream;\n"
        "    types { text/html html; text/css css; application/javascript js; image/gif gif; }\n"
        f"    client_body_temp_path {prefix}/client_body;\n"
        f"    proxy_temp_path {prefix}/proxy;\n"
        f"    fastcgi_temp_path {prefix}/fastcgi;\n"
        f"    uwsgi_temp_path {prefix}/uwsgi;\n"
        f"    scgi_temp_path {prefix}/scgi;\n"
        "    keepalive_requests 100000;\n"
        + "".join("    " + line + "\n" if line else "\n" for line in server_block.splitlines())
        + "}\n"
    )
