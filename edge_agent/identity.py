"""Who a visitor is, proven: the site's auth header or a token the site backend signed.

A visitor may not name a user id; anyone could claim a victim's id and have an
``identify`` event link their own browsing to the victim's profile. A user id is
believed only when it comes from

* the **user header** (``P13N_EDGE_USER_HEADER``), set by the site's own auth layer
  behind nginx — the agent reads it only from a trusted proxy (``EdgeApp`` strips it
  from anyone else, and ``p13n nginx-config`` overwrites a visitor's copy), or
* a **short-lived token** signed by the site backend: a JWT (PyJWT) whose ``sub`` is the
  user id, with ``exp`` at most ``P13N_EDGE_IDENTITY_MAX_AGE_S`` ahead, checked against
  the configured secret (HS256) or public key (RS256, ES256, EdDSA), issuer and audience.
  The SDK sends it as ``p13n.identify(token)``; the token itself is never stored.

Every other claim is dropped and counted (docs/SECURITY.md).
"""

from __future__ import annotations

import time
from pathlib import Path

import jwt

#: Algorithms accepted with a shared secret / with a public key (never "none").
SECRET_ALGORITHMS = ("HS256",)
PUBLIC_KEY_ALGORITHMS = ("RS256", "ES256", "EdDSA")
#: Longest token accepted, in characters.
MAX_TOKEN_LENGTH = 4096
#: Longest user id accepted from a header or a token.
MAX_USER_ID_LENGTH = 256


class IdentityRejected(Exception):
    """A token that does not prove a user id; ``reason`` is the metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


class IdentityVerifier:
    """Checks identity tokens against the site backend's key (none configured: every
    token is refused)."""

    def __init__(
        self, secret: str = "", public_key_file: str = "", issuer: str = "", audience: str = "", max_age_s: float = 600.0
    ) -> None:
        self.key: str | bytes | None = None
        self.algorithms: tuple[str, ...] = ()
        if public_key_file:
            self.key, self.algorithms = Path(public_key_file).read_bytes(), PUBLIC_KEY_ALGORITHMS
        elif secret:
            self.key, self.algorithms = secret, SECRET_ALGORITHMS
        self.issuer, self.audience, self.max_age_s = issuer, audience, max_age_s

    @property
    def enabled(self) -> bool:
        return self.key is not None

    def verify(self, token: object, now: float | None = None) -> str:
        """The user id ``token`` proves; raises :class:`IdentityRejected`."""
        if self.key is None:
            raise IdentityRejected("no_identity_key", "this edge accepts no identity tokens (P13N_EDGE_IDENTITY_SECRET)")
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise IdentityRejected("bad_identity_token", "not a token")
        moment = time.time() if now is None else now
        options = {"require": ["exp", "sub"], "verify_aud": bool(self.audience), "verify_iss": bool(self.issuer)}
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=list(self.algorithms),
                audience=self.audience or None,
                issuer=self.issuer or None,
                options=options,  # type: ignore[arg-type]
                leeway=5,
            )
        except jwt.ExpiredSignatureError as e:
            raise IdentityRejected("expired_identity_token", str(e)) from e
        except jwt.PyJWTError as e:
            raise IdentityRejected("bad_identity_token", str(e)[:200]) from e
        if float(claims["exp"]) > moment + self.max_age_s + 5:
            raise IdentityRejected("long_lived_identity_token", f"exp is more than {self.max_age_s:.0f} s ahead")
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject or len(subject) > MAX_USER_ID_LENGTH:
            raise IdentityRejected("bad_identity_token", "sub is not a user id")
        return subject


def header_user(value: str) -> str:
    """The user id in the (trusted) user header, or ``""``."""
    value = value.strip()
    return value if 0 < len(value) <= MAX_USER_ID_LENGTH else ""
