"""Consent resolution: explicit choice, deployment default, browser opt-out signals."""

from __future__ import annotations

from models.consent import may_identify, parse_choice, resolve

DEFAULT = ("necessary", "analytics", "personalization")


def test_gpc_and_dnt_mean_necessary_only() -> None:
    cookies = {"p13n_consent": "analytics.personalization.marketing"}
    assert resolve({"sec-gpc": "1"}, cookies, DEFAULT) == {"necessary"}
    assert resolve({"dnt": "1"}, cookies, DEFAULT) == {"necessary"}


def test_explicit_choice_wins_over_default() -> None:
    assert resolve({}, {"p13n_consent": "analytics"}, DEFAULT) == {"necessary", "analytics"}
    assert resolve({}, {"p13n_consent": "none"}, DEFAULT) == {"necessary"}


def test_default_applies_without_a_choice_and_invalid_choices_are_ignored() -> None:
    assert resolve({}, {}, DEFAULT) == set(DEFAULT)
    assert resolve({}, {"p13n_consent": "everything"}, ("necessary",)) == {"necessary"}
    assert parse_choice("analytics.bogus") is None


def test_identification_needs_more_than_necessary() -> None:
    assert not may_identify(frozenset({"necessary"}))
    assert may_identify(frozenset({"necessary", "analytics"}))


def test_cookie_header_parsing_is_lenient() -> None:
    from edge_agent.pages import parse_cookies

    assert parse_cookies('a=1; p13n_id="abc"; junk; a=2; =x; b=') == {"a": "1", "p13n_id": "abc", "b": ""}
    assert parse_cookies("") == {}
