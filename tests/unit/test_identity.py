"""Identity proof: tokens signed by the site backend, and nothing a visitor merely claims."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.identity import IdentityRejected, IdentityVerifier

SECRET = "site-backend-secret-0123456789abcdef"


def token(claims: dict[str, object], key: object = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)  # type: ignore[arg-type]


def confused_token(claims: dict[str, object], public_pem: bytes) -> str:
    """The classic algorithm confusion: HS256 keyed with the public key (crafted by hand:
    PyJWT will not even sign it)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(signature)


def test_a_fresh_token_signed_with_the_site_secret_proves_its_subject() -> None:
    verifier = IdentityVerifier(secret=SECRET, issuer="shop", audience="p13n")
    now = time.time()
    good = token({"sub": "alice-42", "exp": now + 300, "iss": "shop", "aud": "p13n"})
    assert verifier.verify(good, now) == "alice-42"


@pytest.mark.parametrize(
    ("claims", "key", "reason"),
    [
        ({"sub": "alice", "exp": 0}, SECRET, "expired_identity_token"),
        ({"sub": "alice", "exp": "later"}, SECRET, "bad_identity_token"),
        ({"sub": "alice"}, SECRET, "bad_identity_token"),  # no exp: not short-lived
        ({"sub": "alice", "exp": 9e9}, SECRET, "long_lived_identity_token"),
        ({"sub": "alice", "exp": "soon"}, "another-secret-of-an-attacker-000", "bad_identity_token"),
        ({"exp": "soon"}, SECRET, "bad_identity_token"),  # no subject
        ({"sub": "alice", "exp": "soon", "iss": "evil"}, SECRET, "bad_identity_token"),
        ({"sub": "alice", "exp": "soon", "aud": "someone-else"}, SECRET, "bad_identity_token"),
    ],
)
def test_tokens_that_prove_nothing_are_refused(claims: dict[str, object], key: str, reason: str) -> None:
    now = time.time()
    claims = {"iss": "shop", "aud": "p13n", **claims}
    if claims.get("exp") == "soon":
        claims["exp"] = now + 60
    verifier = IdentityVerifier(secret=SECRET, issuer="shop", audience="p13n", max_age_s=600)
    with pytest.raises(IdentityRejected) as e:
        verifier.verify(token(claims, key), now)
    assert e.value.reason == reason


def test_unsigned_and_wrong_algorithm_tokens_are_refused(tmp_path: Path) -> None:
    now = time.time()
    private = Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "site.pub").write_bytes(pem)
    verifier = IdentityVerifier(public_key_file=str(tmp_path / "site.pub"))
    assert verifier.verify(token({"sub": "bob", "exp": now + 60}, private, "EdDSA"), now) == "bob"
    unsigned = jwt.encode({"sub": "bob", "exp": now + 60}, None, algorithm="none")  # type: ignore[arg-type]
    for bad in (unsigned, confused_token({"sub": "bob", "exp": now + 60}, pem), "not.a.token", 42):
        with pytest.raises(IdentityRejected):
            verifier.verify(bad, now)


def test_without_a_configured_key_no_token_is_believed() -> None:
    with pytest.raises(IdentityRejected) as e:
        IdentityVerifier().verify(token({"sub": "alice", "exp": time.time() + 60}))
    assert e.value.reason == "no_identity_key"
