"""Generated data with planted structure, for tests, benchmarks and the demo.

* :func:`taste_groups`: users in ``groups`` taste groups, each preferring its own
  slice of the catalog, over a long-tail popularity background. A recommender that
  finds the groups beats popularity by a wide margin.
* :func:`visitor_archetypes`: visitor attribute dicts from ``k`` known archetypes
  (device, time of day, activity, category interest) with their true labels.
* :func:`described_items`: titles for :func:`taste_groups`' items whose words carry the
  planted groups (each group its own vocabulary, plus words shared by all), for the
  cold-start protocol.
* :func:`themed_items`: the same, in plain English: each group a theme whose items are
  named with different words for related things (boots, sandals, sneakers…), so only
  a model that knows what words mean links most of a group's items.
* :func:`chain_walks`: visitors walking item chains in order (a collection viewed
  part after part): what comes next is planted, so a sequence model can find it
  where co-occurrence alone only finds the chain.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.data import Interactions, Item
from models.features import DEFAULT_CATEGORIES, DEVICES


def taste_groups(
    users: int,
    items: int,
    interactions: int,
    groups: int = 10,
    in_group: float = 0.8,
    seed: int = 0,
    start_ts: float = 1_700_000_000.0,
    item_ids: list[str] | None = None,
) -> Interactions:
    """``interactions`` (user, item, weight, timestamp) rows with planted tastes.

    Items are ``i0…`` unless ``item_ids`` names them (its length overrides ``items``);
    consecutive slices of the item list form the groups' tastes.
    """
    rng = np.random.default_rng(seed)
    if item_ids is not None:
        items = len(item_ids)
    user_group = rng.integers(0, groups, users)
    item_array = np.array(item_ids if item_ids is not None else [f"i{j}" for j in range(items)], dtype=object)
    user_ids = np.array([f"u{j}" for j in range(users)], dtype=object)
    slice_size = max(1, items // groups)
    # background popularity: Zipf-like over all items
    ranks = np.arange(1, items + 1, dtype=np.float64)
    background = 1.0 / ranks
    background /= background.sum()
    u = rng.integers(0, users, interactions)
    group = user_group[u]
    from_group = rng.random(interactions) < in_group
    # within its slice a group also has favourites (Zipf), as real tastes do
    slice_weights = 1.0 / np.arange(1, slice_size + 1, dtype=np.float64)
    slice_weights /= slice_weights.sum()
    in_slice = rng.choice(slice_size, size=interactions, p=slice_weights) + group * slice_size
    from_background = rng.choice(items, size=interactions, p=background)
    item = np.where(from_group, in_slice, from_background)
    weights = rng.choice(np.array([1.0, 2.0, 4.0, 8.0], dtype=np.float32), size=interactions, p=[0.7, 0.2, 0.07, 0.03])
    timestamps = start_ts + np.sort(rng.random(interactions)) * 90 * 86400
    return Interactions(user_ids[u], item_array[item], weights.astype(np.float32), timestamps)


def visitor_archetypes(n: int, k: int = 4, seed: int = 0) -> tuple[list[dict[str, Any]], np.ndarray]:
    """``n`` visitor attribute dicts drawn from ``k`` archetypes, and their labels."""
    rng = np.random.default_rng(seed)
    cats = list(DEFAULT_CATEGORIES)
    archetypes = []
    for a in range(k):
        archetypes.append(
            {
                "device": DEVICES[a % 3],
                "hour": (6 + a * 24 // k) % 24,
                "views": [3, 40, 12, 80, 6, 25][a % 6],
                "carts": [0, 5, 1, 12, 0, 3][a % 6],
                "purchases": [0, 2, 0, 6, 0, 1][a % 6],
                "favourite": cats[a % len(cats)],
            }
        )
    labels = rng.integers(0, k, n)
    rows: list[dict[str, Any]] = []
    for label in labels:
        arch = archetypes[label]
        device = arch["device"] if rng.random() < 0.95 else DEVICES[rng.integers(0, 3)]
        views = max(0, int(rng.normal(arch["views"], arch["views"] * 0.15 + 1)))
        counts = {c: int(rng.poisson(1)) for c in cats}
        counts[arch["favourite"]] += max(1, int(views * 0.7))
        rows.append(
            {
                "device": device,
                "hour": int(rng.normal(arch["hour"], 1.0)) % 24,
                "views": views,
                "carts": max(0, int(rng.normal(arch["carts"], 1.0))),
                "purchases": max(0, int(rng.normal(arch["purchases"], 0.5))),
                "category_views": counts,
            }
        )
    return rows, labels


def chain_walks(
    users: int, chains: int = 40, length: int = 25, steps: tuple[int, int] = (3, 9), jump: float = 0.1, seed: int = 0
) -> Interactions:
    """Each user picks a chain and a start, then views ``steps`` items forward along it,
    a minute apart (with probability ``jump`` a step goes to a random item instead).
    Item ids say nothing of the order (``chain{c}-{p}`` shuffled into ``item{n}``)."""
    rng = np.random.default_rng(seed)
    names = rng.permutation(chains * length)
    out_u: list[str] = []
    out_i: list[str] = []
    out_t: list[float] = []
    for u in range(users):
        chain = int(rng.integers(chains))
        n = int(rng.integers(steps[0], steps[1] + 1))
        pos = int(rng.integers(0, max(1, length - n)))
        start = 1.7e9 + u * 3600.0
        for step in range(n):
            along = chain * length + min(pos + step, length - 1)
            item = int(rng.integers(chains * length)) if rng.random() < jump else along
            out_u.append(f"walker{u:06d}")
            out_i.append(f"item{int(names[item]):05d}")
            out_t.append(start + 60.0 * step)
    m = len(out_u)
    return Interactions(
        np.array(out_u, dtype=object), np.array(out_i, dtype=object), np.ones(m, dtype=np.float32), np.array(out_t)
    )


def described_items(items: int, groups: int, seed: int = 0, words_per_group: int = 12) -> dict[str, Item]:
    """A title for each of :func:`taste_groups`' items ``i0…``: three words of its
    group's vocabulary and two of the shared one (items past the last whole group:
    shared words only)."""
    rng = np.random.default_rng(seed)
    shared = [f"common{w}" for w in range(40)]
    slice_size = max(1, items // groups)
    out: dict[str, Item] = {}
    for j in range(items):
        group = j // slice_size
        own = [f"g{group}w{w}" for w in rng.choice(words_per_group, size=3, replace=False)] if group < groups else []
        words = own + [str(w) for w in rng.choice(shared, size=2, replace=False)]
        out[f"i{j}"] = Item(f"i{j}", " ".join(words))
    return out


#: Themes for :func:`themed_items`: related things, rarely the same word twice.
THEMES: tuple[tuple[str, ...], ...] = (
    (
        "boots",
        "sandals",
        "sneakers",
        "slippers",
        "loafers",
        "heels",
        "clogs",
        "moccasins",
        "trainers",
        "flip-flops",
        "brogues",
        "wellingtons",
    ),
    (
        "coffee",
        "espresso",
        "tea",
        "latte",
        "cappuccino",
        "lemonade",
        "smoothie",
        "cocoa",
        "juice",
        "milkshake",
        "kombucha",
        "chai",
    ),
    (
        "tent",
        "sleeping bag",
        "campfire stove",
        "lantern",
        "hiking backpack",
        "compass",
        "trekking poles",
        "canteen",
        "hammock",
        "bivouac",
        "firestarter",
        "headlamp",
    ),
    (
        "guitar",
        "violin",
        "piano",
        "drum kit",
        "saxophone",
        "trumpet",
        "ukulele",
        "cello",
        "flute",
        "harmonica",
        "banjo",
        "clarinet",
    ),
    (
        "sofa",
        "armchair",
        "bookshelf",
        "dining table",
        "wardrobe",
        "nightstand",
        "dresser",
        "ottoman",
        "recliner",
        "sideboard",
        "bench",
        "futon",
    ),
    (
        "puppy food",
        "cat litter",
        "dog leash",
        "bird cage",
        "aquarium",
        "hamster wheel",
        "pet bed",
        "chew toy",
        "scratching post",
        "fish flakes",
        "kitten treats",
        "dog collar",
    ),
    (
        "lipstick",
        "mascara",
        "foundation",
        "eyeliner",
        "blush",
        "nail polish",
        "perfume",
        "moisturiser",
        "concealer",
        "eyeshadow",
        "lip balm",
        "bronzer",
    ),
    (
        "hammer",
        "screwdriver",
        "wrench",
        "power drill",
        "pliers",
        "chisel",
        "handsaw",
        "spirit level",
        "sander",
        "tape measure",
        "crowbar",
        "vise",
    ),
    (
        "novel",
        "paperback",
        "poetry collection",
        "biography",
        "atlas",
        "encyclopedia",
        "memoir",
        "thriller",
        "cookbook",
        "comic book",
        "anthology",
        "dictionary",
    ),
    (
        "football",
        "tennis racket",
        "basketball",
        "golf clubs",
        "baseball bat",
        "hockey stick",
        "volleyball",
        "badminton shuttlecock",
        "rugby ball",
        "skateboard",
        "surfboard",
        "ski poles",
    ),
)
_STYLE = ("classic", "deluxe", "compact", "everyday", "premium", "vintage", "modern", "lightweight")


def themed_items(items: int, groups: int, seed: int = 0) -> dict[str, Item]:
    """Titles in plain English for :func:`taste_groups`' items ``i0…``: one thing of
    its group's theme and a style word shared by all (items past the last whole
    group, or past the last theme: a style word and a neutral noun)."""
    rng = np.random.default_rng(seed)
    slice_size = max(1, items // groups)
    out: dict[str, Item] = {}
    for j in range(items):
        group = j // slice_size
        style = str(rng.choice(_STYLE))
        thing = str(rng.choice(THEMES[group])) if group < min(groups, len(THEMES)) else "item"
        out[f"i{j}"] = Item(f"i{j}", f"{style} {thing}")
    return out
