"""``p13n nginx-config`` output: structure of both modes and option validation.

(A real nginx loads and serves these configs in tests/integration.)
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge_agent.nginx_config import ConfigError, NginxOptions, render_server


def opts(mode: str, **kw: str) -> NginxOptions:
    return NginxOptions(mode=mode, agent="127.0.0.1:8700", origin="http://127.0.0.1:8000", **kw)


def test_ssi_mode_decides_once_and_fails_open() -> None:
    text = render_server(opts("ssi", listen="8080"))
    assert "ssi on;" in text
    assert "auth_request /_p13n/auth;" in text
    assert "auth_request_set $p13n_cookie $upstream_http_set_cookie;" in text
    assert "add_header Set-Cookie $p13n_cookie;" in text
    assert "error_page 400 401 403 404 500 502 503 504 = @p13n_open;" in text
    assert "location @p13n_open {\n        return 204;" in text
    assert 'add_header Cache-Control "private" always;' in text
    assert "Vary" in text and "add_header Vary" not in text
    assert 'proxy_set_header Accept-Encoding "";' in text  # SSI needs an uncompressed shell


def test_filter_mode_proxies_pages_to_agent_with_origin_fallback() -> None:
    text = render_server(opts("filter"))
    assert "ssi on;" not in text
    assert "error_page 502 504 = @p13n_origin_direct;" in text
    assert "location / {" in text and "proxy_pass http://p13n_agent;" in text


def test_both_modes_keep_static_files_away_from_the_agent_and_braces_balance() -> None:
    for mode in ("ssi", "filter"):
        text = render_server(opts(mode))
        assert r"location ~* \.(css|js|" in text
        assert text.count("{") == text.count("}")


def test_geo_header_is_forwarded_when_configured() -> None:
    assert "proxy_set_header X-Geo-Country $http_cf_ipcountry;" in render_server(opts("ssi", geo_header="$http_cf_ipcountry"))
    # a node that serves one country may name it
    assert 'proxy_set_header X-Geo-Country "fr";' in render_server(opts("ssi", geo_header='"fr"'))


def test_headers_the_agent_trusts_are_always_overwritten() -> None:
    """A visitor's own X-Geo-Country or X-User-Id never reaches the agent: nginx sets
    them in every location that talks to it (empty removes them)."""
    for mode in ("ssi", "filter"):
        text = render_server(opts(mode))
        agent_locations = text.count("proxy_pass http://p13n_agent")
        assert text.count('proxy_set_header X-Geo-Country "";') == agent_locations
        assert text.count('proxy_set_header X-User-Id "";') == agent_locations
    assert "proxy_set_header X-User-Id $auth_user;" in render_server(opts("filter", user_id_from="$auth_user"))


@pytest.mark.parametrize(
    ("field", "value", "option"),
    [
        ("mode", "edge", "--mode"),
        ("user_id_from", "x; evil", "--user-id-from"),
        ("geo_header", "$x;}", "--geo-header"),
        ("geo_header", '"fra"; evil', "--geo-header"),
        ("cache_dir", "relative/dir", "--cache-path"),
        ("cache_dir", "/var/cache/x; evil", "--cache-path"),
        ("agent", "nohost", "--agent"),
        ("origin", "ftp://x", "--origin"),
        ("origin", "http://x/path", "--origin"),
    ],
)
def test_invalid_options_name_the_option(field: str, value: str, option: str) -> None:
    kw = {"mode": "ssi", "agent": "127.0.0.1:1", "origin": "http://o:1"}
    kw[field] = value
    with pytest.raises(ConfigError, match=option):
        render_server(NginxOptions(**kw))


def test_cli_prints_the_block() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "p13n",
            "nginx-config",
            "--mode",
            "filter",
            "--agent",
            "127.0.0.1:8700",
            "--origin",
            "http://127.0.0.1:8000",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("# p13n edge personalization, filter mode")
    bad = subprocess.run(
        [sys.executable, "-m", "p13n", "nginx-config", "--mode", "ssi", "--agent", "x", "--origin", "http://o:1"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--agent" in bad.stderr


def test_echo_slots_capture_each_fragment_and_always_ask_the_agent() -> None:
    text = render_server(opts("ssi", echo_slots=("hero", "top-banner")))
    assert "auth_request_set $p13n_slot_hero $upstream_http_x_p13n_slot_hero;" in text
    assert "auth_request_set $p13n_slot_top_banner $upstream_http_x_p13n_slot_top_banner;" in text
    assert "proxy_pass http://p13n_agent/_p13n/auth?slots=hero,top-banner;" in text
    assert "$cookie_p13n_id" not in text  # fragments come from the auth call, so no short-circuit
    with pytest.raises(ConfigError, match="--echo-slots"):
        render_server(opts("filter", echo_slots=("hero",)))


def test_echo_slots_can_be_collected_from_templates() -> None:
    from pathlib import Path

    from edge_agent.cli import slot_names

    assert slot_names(str(Path(__file__).resolve().parents[2] / "templates" / "pages")) == ("banner", "hero", "offer", "recs")
    assert slot_names("hero, offer") == ("hero", "offer")
    with pytest.raises(ValueError, match="invalid slot names"):
        slot_names("../x")


def test_the_cache_path_is_an_option() -> None:
    text = render_server(opts("ssi", cache_dir="/srv/nginx-cache/p13n"))
    assert text.startswith("# ") and "proxy_cache_path /srv/nginx-cache/p13n levels=1:2" in text
    assert "/var/cache/nginx/p13n" not in text


def test_slot_fragments_are_cached_by_class_never_by_visitor_and_without_a_lock() -> None:
    text = render_server(opts("ssi", cache_dir="/srv/c/p13n", geo_header="$http_cf_ipcountry"))
    assert "proxy_cache_path /srv/c/p13n-fragments levels=1:2 keys_zone=p13n_fragments:" in text
    slot = text.split("location ^~ /_p13n/slot/ {", 1)[1].split("}", 1)[0]
    key = slot.split('proxy_cache_key "', 1)[1].split('"', 1)[0]
    assert key.split("|") == [
        "$scheme$host$uri?$p13n_slot_args",  # the include's parameters without the page's request id
        "$cookie_p13n_cls",
        "$http_cf_ipcountry",
        "$cookie_p13n_consent",
        "$http_sec_gpc",
        "$http_dnt",
    ]
    assert "p13n_id" not in key and "$args" not in key.replace("$p13n_slot_args", "")
    assert "proxy_cache_bypass $p13n_no_class;" in slot and "proxy_no_cache $p13n_no_class;" in slot
    # per-visitor slots share these keys and are never stored: a lock would make their
    # concurrent requests wait for an entry that never comes
    assert "proxy_cache_lock" not in slot
    # a fixed country is the same for every request: not a key part (and no quotes inside the key)
    fixed = render_server(opts("ssi", geo_header='"fr"'))
    assert '"fr"' not in fixed.split('proxy_cache_key "', 1)[1].split('";', 1)[0]
