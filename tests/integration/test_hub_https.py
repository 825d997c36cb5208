"""The hub's API over HTTPS with a configured certificate (a throwaway CA), and the
admin commands verifying it."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from hub.auth import create_token
from p13n.procs import free_port, p13n_command, spawn
from tests.integration.tls_helpers import make_ca


def test_hub_serves_https_only_and_the_commands_verify_it(nats_server: str, tmp_path: Path) -> None:
    ca, cert, key = make_ca(tmp_path)
    token = create_token(tmp_path / "tokens.json", "po", "privacy_officer")
    port = free_port()
    env = {
        "P13N_HUB_LISTEN": f"127.0.0.1:{port}",
        "P13N_HUB_NATS_URL": nats_server,
        "P13N_HUB_DATA_DIR": str(tmp_path / "hub"),
        "P13N_ALLOW_DEV_KEYS": "1",
        "P13N_HUB_TOKENS_FILE": str(tmp_path / "tokens.json"),
        "P13N_HUB_TLS_CERT": str(cert),
        "P13N_HUB_TLS_KEY": str(key),
    }
    hub = spawn("hub-https", p13n_command("hub", "serve"), tmp_path, env)
    try:
        context = ssl.create_default_context(cafile=str(ca))
        deadline, health = time.monotonic() + 30, None
        while time.monotonic() < deadline and health is None:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/v1/healthz", context=context, timeout=2) as r:
                    health = json.loads(r.read())
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        assert health == {"status": "ok", "nats": "connected"}
        plain_refused = False
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/healthz", timeout=2)
        except (urllib.error.URLError, OSError, http.client.HTTPException):  # a TLS alert, not HTTP
            plain_refused = True
        assert plain_refused
        base = [
            sys.executable,
            "-m",
            "p13n",
            "erasure",
            "status",
            "er_nothing",
            "--hub",
            f"https://127.0.0.1:{port}",
            "--token",
            token,
        ]
        verified = subprocess.run([*base, "--ca", str(ca)], capture_output=True, text=True)
        assert verified.returncode == 1 and "404 unknown_request" in verified.stderr  # reached and authorised
        unverified = subprocess.run(base, capture_output=True, text=True)
        assert unverified.returncode == 1 and "unreachable" in unverified.stderr  # a certificate nobody vouches for
        # the console's session cookie over HTTPS is Secure (as well as HttpOnly, SameSite=Strict)
        origin = f"https://127.0.0.1:{port}"
        sign_in = urllib.request.Request(
            origin + "/console/sign-in",
            data=urllib.parse.urlencode({"token": token}).encode(),
            headers={"origin": origin},
        )

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None

        opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=context))
        try:
            opener.open(sign_in, timeout=5)
            raise AssertionError("expected a 303 to the console")
        except urllib.error.HTTPError as e:
            assert e.code == 303
            cookie = e.headers["set-cookie"]
        assert "p13n_console=" in cookie and "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    finally:
        hub.stop()


def test_tls_settings_come_in_pairs(tmp_path: Path) -> None:
    out = subprocess.run(
        p13n_command("hub", "serve"),
        capture_output=True,
        text=True,
        env={"P13N_HUB_TLS_CERT": str(tmp_path / "x.pem"), "PATH": ""},
    )
    assert out.returncode == 2 and "P13N_HUB_TLS_CERT" in out.stderr
