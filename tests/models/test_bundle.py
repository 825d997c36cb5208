"""Signed bundles: verification refuses anything tampered, unsigned or unknown."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest

from models.bundle import BundleRejected, build_bundle, generate_key, load_private_key, load_public_key, npy_bytes, open_bundle
from models.features import FeatureSpec, default_spec


@pytest.fixture(scope="module")
def keys():  # type: ignore[no-untyped-def]
    private, public = generate_key()
    return load_private_key(private), load_public_key(public)


def make(keys, spec: FeatureSpec | None = None, files: dict[str, bytes] | None = None) -> bytes:  # type: ignore[no-untyped-def]
    return build_bundle(
        files or {"items.json": b'{"ids": ["a"]}', "f.npy": npy_bytes(np.arange(4, dtype=np.float32))},
        version=7,
        spec=spec or default_spec(),
        metrics={"als": {"ndcg": 0.2}},
        models={},
        private_key=keys[0],
    )


def rewrite(blob: bytes, change) -> bytes:  # type: ignore[no-untyped-def]
    members = {}
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        for info in tar:
            members[info.name] = tar.extractfile(info).read()  # type: ignore[union-attr]
    change(members)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_valid_bundle_opens(keys) -> None:  # type: ignore[no-untyped-def]
    b = open_bundle(make(keys), keys[1])
    assert b.version == 7 and b.json("items.json") == {"ids": ["a"]}
    assert b.array("f.npy").tolist() == [0.0, 1.0, 2.0, 3.0]
    assert b.manifest["files"]["items.json"]["bytes"] == 14


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda m: m.__setitem__("items.json", b'{"ids": ["evil"]}'), "bad_hash"),
        (lambda m: m.__setitem__("manifest.json", m["manifest.json"].replace(b'"version": 7', b'"version": 8')), "bad_signature"),
        (lambda m: m.pop("manifest.sig"), "unsigned"),
        (lambda m: m.__setitem__("extra.json", b"{}"), "bad_member"),
        (lambda m: m.pop("f.npy"), "bad_member"),
    ],
    ids=["member changed", "manifest changed", "signature removed", "member added", "member removed"],
)
def test_tampered_bundles_are_refused(keys, change, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BundleRejected) as e:
        open_bundle(rewrite(make(keys), change), keys[1])
    assert e.value.reason == reason


def test_wrong_key_and_garbage_are_refused(keys) -> None:  # type: ignore[no-untyped-def]
    _, other_public = generate_key()
    with pytest.raises(BundleRejected, match="bad_signature"):
        open_bundle(make(keys), load_public_key(other_public))
    with pytest.raises(BundleRejected, match="not_a_bundle"):
        open_bundle(b"not a tar at all" * 100, keys[1])


def test_unknown_feature_spec_is_refused(keys) -> None:  # type: ignore[no-untyped-def]
    future = FeatureSpec(version="2", features=default_spec().features)
    with pytest.raises(BundleRejected, match="unknown_feature_spec"):
        open_bundle(make(keys, spec=future), keys[1])


def test_object_arrays_are_never_unpickled(keys) -> None:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    b = open_bundle(make(keys, files={"evil.npy": buf.getvalue()}), keys[1])
    with pytest.raises(ValueError, match="allow_pickle"):
        b.array("evil.npy")


def test_member_names_are_restricted(keys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="invalid bundle member"):
        make(keys, files={"../x.json": b"{}"})
    with pytest.raises(ValueError, match="invalid bundle member"):
        make(keys, files={"model.pkl": b"x"})


def test_a_small_bundle_cannot_unpack_to_a_large_one(keys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """10 KB of sparse tar used to unpack to 64 MB before the signature was checked:
    now its headers are refused before any member is read."""
    import subprocess
    import tracemalloc

    big = tmp_path / "f.npy"
    with open(big, "wb") as f:
        f.write(b"x" * 100)
        f.truncate(64 * 1024 * 1024)  # a hole: no bytes on disk, 64 MB when read
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "manifest.sig").write_bytes(b"0" * 64)
    subprocess.run(["tar", "--sparse", "-cf", "bomb.tar", "manifest.json", "manifest.sig", "f.npy"], cwd=tmp_path, check=True)
    bomb = (tmp_path / "bomb.tar").read_bytes()
    assert len(bomb) < 64 * 1024
    tracemalloc.start()
    with pytest.raises(BundleRejected) as e:
        open_bundle(bomb, keys[1])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert e.value.reason == "bad_member" and peak < 4 * 1024 * 1024


def test_members_are_read_only_after_the_signature_verifies(keys) -> None:  # type: ignore[no-untyped-def]
    other = load_private_key(generate_key()[0])
    forged = build_bundle(
        {"f.npy": b"\x00" * 1_000_000}, version=9, spec=default_spec(), metrics={}, models={}, private_key=other
    )
    with pytest.raises(BundleRejected) as e:
        open_bundle(forged, keys[1])
    assert e.value.reason == "bad_signature"
    # a member whose header claims more than the bundle holds is refused by its header
    blob = make(keys, files={"f.npy": npy_bytes(np.zeros(50_000, dtype=np.float32))})
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        member = tar.getmember("f.npy")
    truncated = blob[: member.offset_data + member.size // 2]
    with pytest.raises(BundleRejected) as e:
        open_bundle(truncated, keys[1])
    assert e.value.reason in ("bad_member", "not_a_bundle")
