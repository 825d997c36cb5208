"""TLS client context for NATS connections (a CA file configured by the operator)."""

from __future__ import annotations

import ssl


def client_context(ca_file: str) -> ssl.SSLContext | None:
    """A verifying client context trusting ``ca_file``; None when no CA is configured."""
    if not ca_file:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
