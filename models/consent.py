"""Consent categories and how a request's signals resolve to them (sans-IO).

Categories: ``necessary`` (always), ``analytics``, ``personalization``, ``marketing``.
The order, applied wherever consent is read (docs/PRIVACY.md):

1. ``Sec-GPC: 1`` or ``DNT: 1``, or a GPP string whose US National section carries GPC:
   nothing beyond ``necessary``, whatever else is set;
2. a TC string in the CMP's cookie (``euconsent-v2``; :class:`CmpPolicy`): the
   categories its purposes grant; an unreadable one grants nothing (and is counted);
3. the explicit choice (the ``p13n_consent`` cookie: our banner, ``p13n.consent()``,
   or the SDK's reading of Google Consent Mode);
4. the deployment default;

and then a GPP string's US National opt-out of sale, sharing or targeted advertising
takes ``marketing`` away from whichever of 2–4 applied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from models import gpp, tcf

CATEGORIES = ("necessary", "analytics", "personalization", "marketing")
CONSENT_COOKIE = "p13n_consent"


def parse_choice(raw: str) -> frozenset[str] | None:
    """Parse a consent cookie value (``analytics.personalization``); None if absent/invalid."""
    if not raw:
        return None
    parts = {p.strip().lower() for p in raw.replace(",", ".").split(".") if p.strip()}
    if not parts <= set(CATEGORIES) | {"none"}:
        return None
    return frozenset((parts - {"none"}) | {"necessary"})


TCF_COOKIE = "euconsent-v2"
GPP_COOKIE = "__gpp"
SEEN_MAX = 10_000
NOTHING = frozenset({"necessary"})


@dataclass(frozen=True)
class CmpPolicy:
    """How a consent platform's strings map to categories: the cookie its TC string is
    kept in (empty: not read), the TCF purposes each category needs, optionally our
    vendor id (then that vendor's consent is needed too), what to call with the reason
    of an unreadable string (a metric), and the cookie of its GPP string."""

    cookie: str = TCF_COOKIE
    purposes: Mapping[str, frozenset[int]] = field(default_factory=lambda: dict(tcf.DEFAULT_PURPOSES))
    vendor_id: int = 0
    invalid: Callable[[str], None] | None = field(default=None, compare=False)
    #: The cookie holding the CMP's GPP string (empty: not read).
    gpp_cookie: str = GPP_COOKIE
    #: TC string → categories already worked out (a visitor's string repeats on every
    #: request; decoding one with 800 vendors costs ~0.2 ms). Bounded: cleared when full.
    _seen: dict[str, frozenset[str] | str | None] = field(default_factory=dict, compare=False, repr=False)

    def gpp_limits(self, cookies: Mapping[str, str]) -> frozenset[str] | None:
        """What a GPP string withholds: every category beyond necessary (its GPC flag, or
        unreadable), ``marketing`` (a US National opt-out), or None (nothing)."""
        raw = cookies.get(self.gpp_cookie, "") if self.gpp_cookie else ""
        if not raw:
            return None
        key = "gpp\n" + raw  # beside the TC strings in the same bounded memo
        found = self._seen.get(key, False)
        if found is False:
            try:
                usnat = gpp.decode(raw).usnat
                if usnat is None:
                    found = None
                elif usnat.gpc:
                    found = frozenset(CATEGORIES) - NOTHING
                else:
                    found = frozenset({"marketing"}) if usnat.opted_out else None
            except gpp.GppError as e:
                found = "gpp_" + e.reason
            self._remember(key, found)
        if isinstance(found, str):  # unreadable: counted every time it is met
            if self.invalid is not None:
                self.invalid(found)
            return frozenset(CATEGORIES) - NOTHING
        return found  # type: ignore[return-value]

    def _remember(self, key: str, value: frozenset[str] | str | None) -> None:
        if len(self._seen) >= SEEN_MAX:
            self._seen.clear()
        self._seen[key] = value

    def categories(self, cookies: Mapping[str, str]) -> frozenset[str] | None:
        """The TC string's categories; None when there is none to read."""
        raw = cookies.get(self.cookie, "") if self.cookie else ""
        if not raw:
            return None
        found = self._seen.get(raw)
        if found is None:
            try:
                found = tcf.categories(tcf.decode(raw, vendors=bool(self.vendor_id)), self.purposes, self.vendor_id)
            except tcf.TcfError as e:
                found = e.reason
            self._remember(raw, found)
        if isinstance(found, str):  # unreadable: counted every time it is met
            if self.invalid is not None:
                self.invalid(found)
            return NOTHING
        return found

    def record(self, cookies: Mapping[str, str]) -> dict[str, object] | None:
        """What a consent record keeps of the CMP's TC string (for audit): CMP id and
        version, policy and vendor list versions, the string; None without a readable one."""
        raw = cookies.get(self.cookie, "") if self.cookie else ""
        try:
            tc = tcf.decode(raw, vendors=False) if raw else None
        except tcf.TcfError:
            return None
        if tc is None:
            return None
        return {
            "cmp_id": tc.cmp_id,
            "cmp_version": tc.cmp_version,
            "policy_version": tc.policy_version,
            "vendor_list_version": tc.vendor_list_version,
            "tc_string": raw.strip(),
        }


def resolve(
    headers: Mapping[str, str], cookies: Mapping[str, str], default: Iterable[str], cmp: CmpPolicy | None = None
) -> frozenset[str]:
    """Effective consent for one request (``headers`` keys lower-case)."""
    if headers.get("sec-gpc", "").strip() == "1" or headers.get("dnt", "").strip() == "1":
        return NOTHING
    if cmp is None:
        return _chosen(cookies, default)
    withheld = cmp.gpp_limits(cookies) or frozenset()
    from_cmp = cmp.categories(cookies)
    return (from_cmp if from_cmp is not None else _chosen(cookies, default)) - withheld


def _chosen(cookies: Mapping[str, str], default: Iterable[str]) -> frozenset[str]:
    """Our own cookie's choice, else the default."""
    choice = parse_choice(cookies.get(CONSENT_COOKIE, ""))
    if choice is not None:
        return choice
    return frozenset(set(default) | {"necessary"})


def may_identify(consent: frozenset[str]) -> bool:
    """A visitor cookie may be set only when something beyond ``necessary`` needs it."""
    return "personalization" in consent or "analytics" in consent
