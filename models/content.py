"""The content bundle: slot definitions, trusted fragments and the catalog.

The hub builds it from a ``templates/`` directory; the edge loads it. The tag in a
page only names a slot; everything a slot can show lives here, so site owners change
what a slot does without touching templates.

Layout of a templates directory::

    slots.json            slot definitions (see docs/SLOTS.md)
    segments.json         rule segments: name → condition (optional)
    holdout.json          the site-wide personalization holdout (optional):
                          {"share": 0.05, "seed": "…"} (docs/SLOTS.md)
    fragments/*.html      trusted HTML fragments; ``{{field}}`` placeholders are
                          filled from catalog/context data, escaped for where they
                          sit (text, attribute, URL, CSS, script: models/escaping.py)
    catalog.json          list of items: id, title, category, price, url, image …
    pages/*.html          tagged page templates (served by the demo origin)
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.escaping import ESCAPERS, UnsafePlaceholder, placeholder_contexts
from models.experiments import HASH_VERSIONS, GlobalHoldout
from models.slots import SLOT_NAME_RE
from models.targeting import Predicate, compile_condition

FORMAT = "p13n-content/1"
SLOT_KINDS = ("variant", "recommend", "experiment", "bandit")
#: A bandit slot's seed names its weights' key in the control bucket (``bandit.<seed>``).
_BANDIT_SEED = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_FRAGMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class BundleError(ValueError):
    """A content bundle is malformed; ``where`` points at the offending part."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True, slots=True)
class Fragment:
    """A trusted HTML fragment, pre-split at its placeholders.

    ``pieces`` alternates literal HTML (even indexes) and field names (odd indexes);
    ``escapers`` has, for each placeholder, the escaping its context needs (text,
    attribute, URL, CSS, script: ``models.escaping``), found once at compile time.
    """

    name: str
    pieces: tuple[str, ...]
    escapers: tuple[Callable[[str], str], ...] = ()

    @classmethod
    def compile(cls, name: str, source: str) -> Fragment:
        """Split ``source`` at its placeholders and find each one's context; raises
        BundleError for a placeholder no value can safely fill (in a tag name…)."""
        pieces = tuple(_PLACEHOLDER.split(source))
        try:
            kinds = placeholder_contexts(pieces)
        except UnsafePlaceholder as e:
            raise BundleError(f"fragments/{name}", str(e)) from e
        return cls(name=name, pieces=pieces, escapers=tuple(ESCAPERS[k] for k in kinds))

    def render(self, data: Mapping[str, Any]) -> str:
        """Fill placeholders with values escaped for their context (missing fields render empty)."""
        pieces = self.pieces
        if len(pieces) == 1:
            return pieces[0]
        out = [pieces[0]]
        for n, escape in enumerate(self.escapers):
            value = data.get(pieces[2 * n + 1])
            out.append("" if value is None else escape(str(value)))
            out.append(pieces[2 * n + 2])
        return "".join(out)


@dataclass(frozen=True, slots=True)
class Variant:
    id: str
    when: dict[str, Any] | None
    fragment: Fragment
    #: ``when`` compiled once at load (None: always matches)
    test: Predicate | None = None


#: What a ``recommend`` slot may rank a session with ("": the bundle's choice).
RECOMMEND_MODELS = ("", "sequence", "semantic")


@dataclass(frozen=True, slots=True)
class SlotDef:
    """One slot's definition. ``variant`` slots pick the first matching variant;
    ``recommend`` slots render ``count`` catalog items through ``item``."""

    name: str
    kind: str
    variants: tuple[Variant, ...] = ()
    default: Fragment | None = None
    item: Fragment | None = None
    wrapper: Fragment | None = None
    count: int = 4
    max_per_category: int = 0
    when: dict[str, Any] | None = None
    test: Predicate | None = None
    #: ``recommend`` slots: every catalog item rendered once through ``item`` at load time
    cards: Mapping[str, str] = field(default_factory=dict)
    #: ``experiment`` slots: hash seed, variant weights, coverage and holdout share
    seed: str = ""
    weights: tuple[float, ...] = ()
    coverage: float = 1.0
    holdout: float = 0.0
    #: ``experiment`` slots: mutually exclusive with others of the same name and
    #: disjoint range (``(name, start, end)``), and the hash scheme (2, or legacy 1)
    namespace: tuple[str, float, float] | None = None
    hash_version: int = 2
    #: ``bandit`` slots: the conversion metric the hub's Thompson sampling optimises
    #: and the least share every variant keeps
    metric: str = ""
    min_share: float = 0.05
    #: ``recommend`` slots: what ranks a session's items ("": the bundle's session
    #: model; "sequence": the sequence vectors, what comes next; "semantic": item text
    #: embeddings, what reads alike — docs/SLOTS.md)
    model: str = ""
    #: ``recommend`` slots, filled at serving time: the popularity fallback's rendered
    #: body by (count, excluded items) — it depends on nothing else (bounded LRU)
    popular_memo: OrderedDict[tuple[int, frozenset[str]], str] = field(default_factory=OrderedDict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ContentBundle:
    version: int
    created: str
    slots: Mapping[str, SlotDef]
    catalog: tuple[Mapping[str, Any], ...]
    items: Mapping[str, Mapping[str, Any]]
    popular: tuple[str, ...]
    #: rule segments: name → compiled condition (``segments.json``)
    segments: Mapping[str, Predicate] = field(default_factory=dict)
    #: the same segments' condition documents (what they read: edge_agent/shared_fragments.py)
    segment_conditions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: category → its items in popularity order, and each item's overall rank, so a
    #: per-category cap never scans past a full category
    popular_by_category: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    popularity_rank: Mapping[str, int] = field(default_factory=dict)
    #: the site-wide personalization holdout (``holdout.json``; share 0: none)
    holdout: GlobalHoldout = field(default_factory=GlobalHoldout)

    def rule_segments(self, attrs: Mapping[str, Any]) -> list[str]:
        """Names of the rule segments ``attrs`` belong to, in definition order."""
        return [name for name, test in self.segments.items() if test(attrs)]


def _fragment(raw: Mapping[str, Any], ref: Any, where: str) -> Fragment:
    fragments = raw.get("fragments", {})
    if not isinstance(ref, str) or ref not in fragments:
        raise BundleError(where, f"unknown fragment {ref!r}")
    return Fragment.compile(ref, fragments[ref])


def _condition(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BundleError(where, "a condition must be a JSON object")
    return value


def _namespace(value: Any, where: str) -> tuple[str, float, float] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not isinstance(value[0], str)
        or not value[0]
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value[1:])
        or not 0.0 <= value[1] < value[2] <= 1.0
    ):
        raise BundleError(where, 'must be ["name", start, end] with 0 <= start < end <= 1')
    return (value[0], float(value[1]), float(value[2]))


def _bandit(
    spec: Mapping[str, Any], name: str, where: str, variants: tuple[Variant, ...], default: Fragment | None, seed: str
) -> SlotDef:
    if not _BANDIT_SEED.match(seed):
        raise BundleError(where + ".seed", "a bandit's seed is 1-64 letters, digits, _ or -")
    metric = spec.get("metric", "purchase")
    if not isinstance(metric, str) or not metric:
        raise BundleError(where + ".metric", "name a conversion metric (docs/EXPERIMENTS.md)")
    min_share = spec.get("min_share", 0.05)
    if not isinstance(min_share, (int, float)) or isinstance(min_share, bool) or not 0 <= min_share * len(variants) <= 1:
        raise BundleError(where + ".min_share", "must be between 0 and 1 / number of variants")
    return SlotDef(
        name=name,
        kind="bandit",
        variants=variants,
        default=default,
        seed=seed,
        weights=tuple(1.0 for _ in variants),
        metric=metric,
        min_share=float(min_share),
    )


def _holdout(value: Any) -> GlobalHoldout:
    if value is None:
        return GlobalHoldout()
    if not isinstance(value, dict) or set(value) - {"share", "seed"}:
        raise BundleError("holdout", 'must be {"share": 0..0.5, "seed": "…"}')
    share = value.get("share", 0.0)
    if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0.0 <= share <= 0.5:
        raise BundleError("holdout.share", "must be between 0 and 0.5")
    seed = value.get("seed", GlobalHoldout.seed)
    if not isinstance(seed, str) or not seed:
        raise BundleError("holdout.seed", "must be a non-empty string")
    return GlobalHoldout(float(share), seed)


def _slot(raw: Mapping[str, Any], name: str, spec: Any) -> SlotDef:
    where = f"slots.{name}"
    if not SLOT_NAME_RE.match(name):
        raise BundleError(where, "invalid slot name")
    if not isinstance(spec, dict):
        raise BundleError(where, "a slot definition must be an object")
    kind = spec.get("kind", "variant")
    if kind not in SLOT_KINDS:
        raise BundleError(where, f"unknown kind {kind!r} (expected one of {SLOT_KINDS})")
    default = _fragment(raw, spec["default"], where + ".default") if spec.get("default") else None
    if kind in ("experiment", "bandit"):
        variants = []
        weights = []
        for i, v in enumerate(spec.get("variants", [])):
            vw = f"{where}.variants[{i}]"
            if not isinstance(v, dict) or not isinstance(v.get("id"), str):
                raise BundleError(vw, "a variant needs a string id")
            w = v.get("weight", 1.0)
            if not isinstance(w, (int, float)) or w <= 0:
                raise BundleError(vw + ".weight", "must be a positive number")
            variants.append(Variant(v["id"], None, _fragment(raw, v.get("fragment"), vw)))
            weights.append(float(w))
        if not variants:
            raise BundleError(where + ".variants", "an experiment needs at least one variant")
        seed = spec.get("seed", name)
        coverage = spec.get("coverage", 1.0)
        holdout = spec.get("holdout", 0.0)
        if not isinstance(seed, str) or not seed:
            raise BundleError(where + ".seed", "must be a non-empty string")
        for key, value in (("coverage", coverage), ("holdout", holdout)):
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise BundleError(f"{where}.{key}", "must be between 0 and 1")
        hash_version = spec.get("hash_version", 2)
        if hash_version not in HASH_VERSIONS or isinstance(hash_version, bool):
            raise BundleError(where + ".hash_version", f"must be one of {HASH_VERSIONS}")
        if kind == "bandit":
            return _bandit(spec, name, where, tuple(variants), default, seed)
        return SlotDef(
            name=name,
            kind=kind,
            variants=tuple(variants),
            default=default,
            seed=seed,
            weights=tuple(weights),
            coverage=float(coverage),
            holdout=float(holdout),
            namespace=_namespace(spec.get("namespace"), where + ".namespace"),
            hash_version=int(hash_version),
        )
    if kind == "variant":
        variants = []
        for i, v in enumerate(spec.get("variants", [])):
            vw = f"{where}.variants[{i}]"
            if not isinstance(v, dict) or not isinstance(v.get("id"), str):
                raise BundleError(vw, "a variant needs a string id")
            when = _condition(v.get("when"), vw + ".when")
            test = compile_condition(when) if when is not None else None
            variants.append(Variant(v["id"], when, _fragment(raw, v.get("fragment"), vw), test))
        return SlotDef(name=name, kind=kind, variants=tuple(variants), default=default)
    count = spec.get("count", 4)
    if not isinstance(count, int) or not 1 <= count <= 50:
        raise BundleError(where + ".count", "must be an integer 1..50")
    max_cat = spec.get("max_per_category", 0)
    if not isinstance(max_cat, int) or max_cat < 0:
        raise BundleError(where + ".max_per_category", "must be a non-negative integer")
    when = _condition(spec.get("when"), where + ".when")
    model = spec.get("model", "")
    if model not in RECOMMEND_MODELS:
        raise BundleError(where + ".model", f"must be one of {RECOMMEND_MODELS}")
    return SlotDef(
        name=name,
        kind=kind,
        default=default,
        model=model,
        item=_fragment(raw, spec.get("item"), where + ".item"),
        wrapper=_fragment(raw, spec["wrapper"], where + ".wrapper") if spec.get("wrapper") else None,
        count=count,
        max_per_category=max_cat,
        when=when,
        test=compile_condition(when) if when is not None else None,
    )


def wants_model(content_doc: Mapping[str, Any], model: str) -> bool:
    """Whether a recommend slot of the content ranks with ``model`` ("sequence",
    "semantic": only then does training learn and ship its vectors)."""
    slots = content_doc.get("slots") or {}
    return any(isinstance(spec, Mapping) and spec.get("model") == model for spec in slots.values())


def load_content(raw: Mapping[str, Any]) -> ContentBundle:
    """Validate a content bundle document into typed, pre-compiled objects."""
    if raw.get("format") != FORMAT:
        raise BundleError("format", f"expected {FORMAT!r}, got {raw.get('format')!r}")
    version = raw.get("version")
    if not isinstance(version, int) or version < 0:
        raise BundleError("version", "must be a non-negative integer")
    slots_raw = raw.get("slots")
    if not isinstance(slots_raw, dict):
        raise BundleError("slots", "must be an object")
    fragments = raw.get("fragments", {})
    if not isinstance(fragments, dict) or not all(isinstance(v, str) for v in fragments.values()):
        raise BundleError("fragments", "must map names to HTML strings")
    catalog_raw = raw.get("catalog", [])
    if not isinstance(catalog_raw, list):
        raise BundleError("catalog", "must be a list of items")
    items: dict[str, Mapping[str, Any]] = {}
    for i, item in enumerate(catalog_raw):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise BundleError(f"catalog[{i}]", "an item needs a string id")
        items[item["id"]] = item
    popular = tuple(sorted(items, key=lambda k: (-float(items[k].get("popularity", 0) or 0), k)))
    by_category: dict[str, list[str]] = {}
    for item_id in popular:
        by_category.setdefault(str(items[item_id].get("category", "")), []).append(item_id)
    slots = {name: _slot(raw, name, spec) for name, spec in slots_raw.items()}
    segments_raw = raw.get("segments", {})
    if not isinstance(segments_raw, dict):
        raise BundleError("segments", "must map segment names to conditions")
    segments: dict[str, Predicate] = {}
    segment_conditions: dict[str, Mapping[str, Any]] = {}
    for name, condition in segments_raw.items():
        if not SLOT_NAME_RE.match(name):
            raise BundleError(f"segments.{name}", "invalid segment name")
        document = _condition(condition, f"segments.{name}")
        segments[name] = compile_condition(document)
        segment_conditions[name] = document or {}
    for name, slot in slots.items():
        if slot.kind == "recommend" and slot.item is not None:
            item_fragment = slot.item
            slots[name] = replace(slot, cards={item_id: item_fragment.render(item) for item_id, item in items.items()})
    return ContentBundle(
        version=version,
        created=str(raw.get("created", "")),
        slots=slots,
        catalog=tuple(catalog_raw),
        items=items,
        popular=popular,
        segments=segments,
        segment_conditions=segment_conditions,
        popular_by_category={cat: tuple(ids) for cat, ids in by_category.items()},
        popularity_rank={item_id: rank for rank, item_id in enumerate(popular)},
        holdout=_holdout(raw.get("holdout")),
    )


def build_content(templates_dir: Path, version: int = 1) -> dict[str, Any]:
    """Assemble the content bundle document from a templates directory."""
    slots_file = templates_dir / "slots.json"
    try:
        slots = json.loads(slots_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BundleError(str(slots_file), f"cannot read slot definitions: {e}") from e
    fragments: dict[str, str] = {}
    frag_dir = templates_dir / "fragments"
    if frag_dir.is_dir():
        for path in sorted(frag_dir.glob("*.html")):
            if not _FRAGMENT_NAME.match(path.stem):
                raise BundleError(str(path), "invalid fragment file name")
            fragments[path.stem] = path.read_text(encoding="utf-8").strip()
    catalog: list[Any] = []
    catalog_file = templates_dir / "catalog.json"
    if catalog_file.exists():
        try:
            catalog = json.loads(catalog_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise BundleError(str(catalog_file), f"invalid JSON: {e}") from e
    segments: dict[str, Any] = {}
    segments_file = templates_dir / "segments.json"
    if segments_file.exists():
        try:
            segments = json.loads(segments_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise BundleError(str(segments_file), f"invalid JSON: {e}") from e
    doc = {
        "format": FORMAT,
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "slots": slots,
        "fragments": fragments,
        "catalog": catalog,
        "segments": segments,
    }
    holdout_file = templates_dir / "holdout.json"
    if holdout_file.exists():
        try:
            doc["holdout"] = json.loads(holdout_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise BundleError(str(holdout_file), f"invalid JSON: {e}") from e
    load_content(doc)  # fail at build time, not at the edge
    return doc
