"""The feature specification: profile + session attributes → one float32 vector.

Training (hub) and inference (edge) call the same :func:`encode`, so they cannot drift.
The spec is data (JSON-able); its hash goes into every bundle, and an edge refuses a
bundle whose spec hash it does not know (:data:`KNOWN_SPECS`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Categories of the demo catalog; behaviour is summarised per category.
DEFAULT_CATEGORIES = ("dresses", "shoes", "jackets", "accessories")
DEVICES = ("mobile", "tablet", "desktop", "bot")


@dataclass(frozen=True)
class Feature:
    """One block of the vector.

    kinds: ``onehot`` (``values``), ``numeric`` (log1p when ``log``), ``cyclic``
    (sin/cos over ``period``), ``share`` (a category → count mapping as shares over
    ``values``, plus nothing else).
    """

    name: str
    kind: str
    values: tuple[str, ...] = ()
    period: float = 0.0
    log: bool = False

    @property
    def width(self) -> int:
        if self.kind in ("onehot", "share"):
            return len(self.values)
        if self.kind == "cyclic":
            return 2
        return 1

    def columns(self) -> list[str]:
        if self.kind in ("onehot", "share"):
            return [f"{self.name}={v}" for v in self.values]
        if self.kind == "cyclic":
            return [f"{self.name}_sin", f"{self.name}_cos"]
        return [self.name]


@dataclass(frozen=True)
class FeatureSpec:
    version: str
    features: tuple[Feature, ...]

    @property
    def width(self) -> int:
        return sum(f.width for f in self.features)

    def columns(self) -> list[str]:
        return [c for f in self.features for c in f.columns()]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "features": [
                {"name": f.name, "kind": f.kind, "values": list(f.values), "period": f.period, "log": f.log}
                for f in self.features
            ],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FeatureSpec:
        return cls(
            version=str(doc["version"]),
            features=tuple(
                Feature(f["name"], f["kind"], tuple(f.get("values", ())), float(f.get("period", 0.0)), bool(f.get("log", False)))
                for f in doc["features"]
            ),
        )

    def hash(self) -> str:
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def default_spec(categories: Sequence[str] = DEFAULT_CATEGORIES) -> FeatureSpec:
    """Spec v1: device, time of day, activity volume, category interests."""
    cats = tuple(categories)
    return FeatureSpec(
        version="1",
        features=(
            Feature("device", "onehot", DEVICES),
            Feature("hour", "cyclic", period=24.0),
            Feature("views", "numeric", log=True),
            Feature("carts", "numeric", log=True),
            Feature("purchases", "numeric", log=True),
            Feature("category_views", "share", cats),
        ),
    )


def encode(spec: FeatureSpec, attrs: Mapping[str, Any], out: np.ndarray | None = None) -> np.ndarray:
    """Encode ``attrs`` into a float32 vector of ``spec.width`` (missing → zeros)."""
    vec = out if out is not None else np.zeros(spec.width, dtype=np.float32)
    i = 0
    for f in spec.features:
        value = attrs.get(f.name)
        if f.kind == "onehot":
            for j, v in enumerate(f.values):
                vec[i + j] = 1.0 if value == v else 0.0
        elif f.kind == "cyclic":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                angle = 2 * math.pi * (float(value) % f.period) / f.period
                vec[i], vec[i + 1] = math.sin(angle), math.cos(angle)
            else:
                vec[i] = vec[i + 1] = 0.0
        elif f.kind == "share":
            counts = value if isinstance(value, Mapping) else {}
            total = float(sum(float(counts.get(v, 0) or 0) for v in f.values))
            for j, v in enumerate(f.values):
                vec[i + j] = float(counts.get(v, 0) or 0) / total if total > 0 else 0.0
        else:
            x = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
            vec[i] = math.log1p(max(x, 0.0)) if f.log else x
        i += f.width
    return vec


def encode_many(spec: FeatureSpec, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    matrix = np.zeros((len(rows), spec.width), dtype=np.float32)
    for r, attrs in enumerate(rows):
        encode(spec, attrs, matrix[r])
    return matrix


#: Spec versions (and feature kinds) this build of the code can encode.
KNOWN_SPEC_VERSIONS = frozenset({"1"})
KNOWN_KINDS = frozenset({"onehot", "numeric", "cyclic", "share"})


def spec_is_known(spec: FeatureSpec) -> bool:
    """True when this code encodes ``spec`` exactly as the trainer did."""
    return spec.version in KNOWN_SPEC_VERSIONS and all(f.kind in KNOWN_KINDS for f in spec.features)
