"""The signed model bundle: one uncompressed tar of plain files (never a pickle).

Members: ``manifest.json`` (format, version, created, feature spec and its hash,
metrics, models' metadata, and the sha256 and size of every other member),
``manifest.sig`` (ed25519 signature of the exact manifest bytes), ONNX graphs, ``.npy``
arrays (loaded with ``allow_pickle=False``) and JSON. :func:`open_bundle` refuses a
bundle whose signature, member hashes, member set or feature spec does not check out.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from models.features import FeatureSpec, spec_is_known

FORMAT = "p13n-bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
#: Largest bundle accepted, and largest single member (bytes).
MAX_BUNDLE_BYTES = 512 * 1024 * 1024
_MEMBER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ALLOWED_SUFFIXES = (".onnx", ".npy", ".json")


class BundleRejected(ValueError):
    """A bundle failed verification; ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class Bundle:
    manifest: dict[str, Any]
    files: Mapping[str, bytes]

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    def json(self, name: str) -> Any:
        return json.loads(self.files[name])

    def array(self, name: str) -> np.ndarray:
        return np.asarray(np.load(io.BytesIO(self.files[name]), allow_pickle=False))

    def feature_spec(self) -> FeatureSpec:
        return FeatureSpec.from_json(self.manifest["feature_spec"])


def generate_key() -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of a new ed25519 signing key."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the signing key is not an ed25519 private key")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the verification key is not an ed25519 public key")
    return key


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def build_bundle(
    files: Mapping[str, bytes],
    *,
    version: int,
    spec: FeatureSpec,
    metrics: Mapping[str, Any],
    models: Mapping[str, Any],
    private_key: Ed25519PrivateKey,
    created: datetime | None = None,
) -> bytes:
    """Sign and pack ``files`` into bundle bytes."""
    for name in files:
        if not _MEMBER_NAME.match(name) or not name.endswith(_ALLOWED_SUFFIXES) or name in (MANIFEST, SIGNATURE):
            raise ValueError(f"invalid bundle member name {name!r}")
    manifest = {
        "format": FORMAT,
        "version": version,
        "created": (created or datetime.now(UTC)).isoformat(timespec="seconds"),
        "feature_spec": spec.to_json(),
        "feature_spec_hash": spec.hash(),
        "metrics": metrics,
        "models": models,
        "files": {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} for name, data in sorted(files.items())},
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, indent=1).encode()
    signature = private_key.sign(manifest_bytes)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in [(MANIFEST, manifest_bytes), (SIGNATURE, signature), *sorted(files.items())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


#: Most members a bundle may have, and the largest manifest (bytes).
MAX_MEMBERS = 64
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


def _index(data: bytes) -> dict[str, tarfile.TarInfo]:
    """The members' headers, without reading any member. Only plain regular files whose
    bytes lie inside ``data`` are accepted (no sparse or special members), so a bundle
    can never unpack to more than it weighs."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleRejected("too_large", f"{len(data)} bytes > {MAX_BUNDLE_BYTES}")
    index: dict[str, tarfile.TarInfo] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for info in tar:  # headers only: tarfile reads a member's data on extraction
                if len(index) >= MAX_MEMBERS:
                    raise BundleRejected("bad_member", f"more than {MAX_MEMBERS} members")
                if info.type != tarfile.REGTYPE or info.issparse() or not _MEMBER_NAME.match(info.name):
                    raise BundleRejected("bad_member", f"unexpected member {info.name!r}")
                if info.name in index:
                    raise BundleRejected("bad_member", f"duplicate member {info.name!r}")
                if info.offset_data + info.size > len(data):
                    raise BundleRejected("bad_member", f"{info.name!r} claims more bytes than the bundle holds")
                index[info.name] = info
    except tarfile.TarError as e:
        raise BundleRejected("not_a_bundle", str(e)) from e
    return index


def _member(data: bytes, info: tarfile.TarInfo) -> bytes:
    return data[info.offset_data : info.offset_data + info.size]


def open_bundle(data: bytes, public_key: Ed25519PublicKey) -> Bundle:
    """Verify, then open: the signature is checked on the manifest before any other
    member is read; then member sizes, hashes and set, format and feature spec."""
    index = _index(data)
    if MANIFEST not in index or SIGNATURE not in index:
        raise BundleRejected("unsigned", "manifest or signature missing")
    if index[MANIFEST].size > MAX_MANIFEST_BYTES or index[SIGNATURE].size > 1024:
        raise BundleRejected("bad_member", "manifest or signature too large")
    manifest_bytes = _member(data, index.pop(MANIFEST))
    try:
        public_key.verify(_member(data, index.pop(SIGNATURE)), manifest_bytes)
    except InvalidSignature as e:
        raise BundleRejected("bad_signature", "the manifest signature does not verify with this key") from e
    manifest = json.loads(manifest_bytes)
    if manifest.get("format") != FORMAT:
        raise BundleRejected("bad_format", f"format {manifest.get('format')!r}")
    listed = manifest.get("files", {})
    if set(listed) != set(index):
        raise BundleRejected("bad_member", f"members {sorted(index)} differ from the manifest {sorted(listed)}")
    members: dict[str, bytes] = {}
    for name, meta in listed.items():
        if index[name].size != meta.get("bytes"):
            raise BundleRejected("bad_hash", f"{name} does not match its signed size")
        members[name] = _member(data, index[name])
        if hashlib.sha256(members[name]).hexdigest() != meta.get("sha256"):
            raise BundleRejected("bad_hash", f"{name} does not match its sha256")
    spec = FeatureSpec.from_json(manifest["feature_spec"])
    if spec.hash() != manifest.get("feature_spec_hash") or not spec_is_known(spec):
        raise BundleRejected(
            "unknown_feature_spec", f"feature spec {manifest.get('feature_spec_hash')!r} is not one this code can encode"
        )
    return Bundle(manifest, members)
