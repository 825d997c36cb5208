"""Which slots nginx may share between visitors, and the signed class cookie they are
keyed on (edge_agent/shared_fragments.py)."""

from __future__ import annotations

import copy
from typing import Any

from edge_agent.shared_fragments import ClassCodec, condition_reads, plan
from models.content import build_content, load_content
from p13n.procs import DEFAULT_TEMPLATES

KEY = b"k" * 32


def demo_doc() -> dict[str, Any]:
    return build_content(DEFAULT_TEMPLATES)


def test_condition_reads_walks_logical_operators_and_dotted_paths() -> None:
    condition = {
        "$or": [{"device": "mobile"}, {"$and": [{"profile.views": {"$gt": 3}}, {"$not": {"segment": "c1"}}]}],
        "$nor": [{"country": "FR"}],
        "views": {"$in": [1, 2]},
    }
    assert condition_reads(condition) == {"device", "profile", "segment", "country", "views"}
    assert condition_reads(None) == set()


def test_the_demo_shares_only_the_slot_whose_inputs_nginx_can_key_on() -> None:
    share = plan(load_content(demo_doc()))
    assert share is not None
    # offer reads new_visitor, device, country; hero reads the hour (not keyable), recs
    # and the experiment are per visitor
    assert share.slots == {"offer"}
    assert share.inputs == ("consent", "device", "new_visitor")


def test_a_slot_reading_rule_segments_is_shared_only_when_the_segments_are_keyable() -> None:
    doc = demo_doc()
    doc["slots"]["hero"]["variants"] = [{"id": "dach", "when": {"segments": "dach"}, "fragment": "hero-dach"}]
    # segments.json's night-owl reads the hour: the segments are not keyable
    share = plan(load_content(doc))
    assert share is not None and "hero" not in share.slots
    keyable = copy.deepcopy(doc)
    del keyable["segments"]["night-owl"]
    share = plan(load_content(keyable))
    assert share is not None and "hero" in share.slots
    assert "device" in share.inputs  # mobile-shopper reads it: the class carries it


def test_placeholders_count_as_reads() -> None:
    doc = demo_doc()
    # the favourite hero fills {{favourite_category}}: without the hour variant it is shareable
    doc["slots"]["hero"]["variants"] = [v for v in doc["slots"]["hero"]["variants"] if v["id"] != "night-owl"]
    share = plan(load_content(doc))
    assert share is not None and "hero" in share.slots
    assert {"favourite_category", "favourite_views"} <= set(share.inputs)
    doc["fragments"]["hero-default"] = "<p>{{path}}</p>"  # the page path is per request
    share = plan(load_content(doc))
    assert share is not None and "hero" not in share.slots


def test_class_cookie_round_trip_and_refusals() -> None:
    bundle = load_content(demo_doc())
    share = plan(bundle)
    assert share is not None
    codec = ClassCodec(share, KEY)
    cookie = codec.issue({"device": "mobile", "consent": {"personalization", "necessary"}, "new_visitor": True})
    assert cookie is not None and cookie.startswith(f"{bundle.version}.")
    # the class describes the visitor's next request: never new
    assert codec.read(cookie) == {"consent": ["necessary", "personalization"], "device": "mobile", "new_visitor": False}
    # the same inputs give the same class (what lets visitors share a cache entry)
    assert codec.issue({"device": "mobile", "consent": ["necessary", "personalization"]}) == cookie

    version, payload, mac = cookie.split(".")
    forged = codec.issue({"device": "desktop", "consent": ["necessary", "personalization"]})
    assert forged is not None
    assert codec.read(f"{version}.{forged.split('.')[1]}.{mac}") is None  # another payload, the old signature
    assert codec.read(f"{version}.{payload}.{mac[:-2]}AA") is None
    assert codec.read(f"{int(version) + 1}.{payload}.{mac}") is None  # signed for another bundle
    assert ClassCodec(share, b"other-key" * 4).read(cookie) is None  # another agent's key
    assert codec.read("") is None and codec.read("x" * 5000) is None and codec.read("1.%%%.x") is None
    assert codec.issue({"device": "d" * 2000, "consent": []}) is None  # too long for a cookie
