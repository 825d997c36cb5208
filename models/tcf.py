"""IAB TCF v2 (2.0–2.2) TC strings: decode the parts consent depends on (sans-IO).

A TC string is dot-separated segments of web-safe base64 without padding. The first is
the core segment; the others start with a 3-bit segment type (1 disclosed vendors,
2 allowed vendors, 3 publisher TC). Read here: the core fields up to the vendor consent
section (purposes, special features, CMP id and version, policy version, vendor list
version, vendors consented) and the publisher TC segment's purpose consents. Legitimate
interest, publisher restrictions and the vendor sections after consent are skipped:
under TCF 2.2 personalization and measurement purposes need consent, never legitimate
interest. Anything that does not parse raises :class:`TcfError` with a reason; callers
treat it as no consent.

No Python library for TC strings is maintained today (the one on the package index
was last released in 2022 and depends on a fork of ``bitarray``), so this is a
decoder of its own, tested against the IAB Tech Lab's published reference strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

MAX_CHARS = 8192  # a real TC string with every vendor is a few kB
_PUBLISHER_TC = 3


class TcfError(ValueError):
    """A TC string that cannot be read; ``reason`` is short and metric-safe."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class TCString:
    version: int
    created_ds: int  # deciseconds since the epoch
    last_updated_ds: int
    cmp_id: int
    cmp_version: int
    consent_screen: int
    consent_language: str
    vendor_list_version: int
    policy_version: int
    is_service_specific: bool
    special_features: frozenset[int]
    purposes_consent: frozenset[int]
    purposes_li: frozenset[int]
    purpose_one_treatment: bool
    publisher_cc: str
    vendors_consent: frozenset[int]
    #: The publisher TC segment's purpose consents (None when the segment is absent).
    publisher_purposes_consent: frozenset[int] | None = field(default=None)

    def consented(self, purpose: int) -> bool:
        """The purpose is consented in the core segment. The publisher TC segment is
        kept for the record but not required: CMPs send it empty when the site declares
        no publisher purposes (``.YAAAAAAAAAAA``), which would otherwise deny all."""
        return purpose in self.purposes_consent


_ALPHABET = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}


class _Bits:
    """The bits of one web-safe base64 segment, six per character: segments need not
    end on a byte (a GPP header of five characters is 30 bits)."""

    def __init__(self, segment: str) -> None:
        value = 0
        for c in segment:
            digit = _ALPHABET.get(c)
            if digit is None:
                raise TcfError("bad_base64", f"character {c!r}")
            value = value << 6 | digit
        self.value, self.size, self.pos = value, 6 * len(segment), 0

    def read(self, n: int) -> int:
        if self.pos + n > self.size:
            raise TcfError("truncated", f"needs {self.pos + n} bits, has {self.size}")
        shift = self.size - self.pos - n
        self.pos += n
        return (self.value >> shift) & ((1 << n) - 1)

    def flag(self) -> bool:
        return self.read(1) == 1

    def bitfield(self, n: int) -> frozenset[int]:
        """Ids 1..n whose bit is set."""
        bits = self.read(n) if n else 0
        return frozenset(i + 1 for i in range(n) if bits >> (n - 1 - i) & 1)

    def letters(self) -> str:
        return "".join(chr(ord("A") + self.read(6)) for _ in range(2))


def bits_of(segment: str) -> _Bits:
    """A reader of one web-safe base64 segment (shared with models/gpp.py)."""
    return _Bits(segment)


def _vendors(bits: _Bits) -> frozenset[int]:
    max_id = bits.read(16)
    if not bits.flag():
        return bits.bitfield(max_id)
    out: set[int] = set()
    for _ in range(bits.read(12)):
        is_range = bits.flag()
        start = bits.read(16)
        end = bits.read(16) if is_range else start
        if end < start or end > max_id:
            raise TcfError("bad_vendor_range", f"{start}-{end} (max {max_id})")
        out.update(range(start, end + 1))
    return frozenset(out)


def decode(tc_string: str, vendors: bool = True) -> TCString:
    """The TC string's consent-relevant fields; :class:`TcfError` when unreadable.
    ``vendors=False`` stops before the vendor section (``vendors_consent`` empty, the
    publisher segment unread): a fifth of the time of a string with 800 vendors."""
    if not tc_string or len(tc_string) > MAX_CHARS:
        raise TcfError("bad_length", f"{len(tc_string)} characters")
    core, *others = tc_string.strip().split(".")
    bits = _Bits(core)
    version = bits.read(6)
    if version != 2:
        raise TcfError("unsupported_version", str(version))
    created, updated = bits.read(36), bits.read(36)
    cmp_id, cmp_version, screen = bits.read(12), bits.read(12), bits.read(6)
    language = bits.letters()
    vendor_list, policy = bits.read(12), bits.read(6)
    service_specific = bits.flag()
    bits.flag()  # UseNonStandardTexts
    special = bits.bitfield(12)
    purposes, purposes_li = bits.bitfield(24), bits.bitfield(24)
    one_treatment = bits.flag()
    country = bits.letters()
    consented_vendors = _vendors(bits) if vendors else frozenset()
    publisher: frozenset[int] | None = None
    for segment in others if vendors else ():
        seg = _Bits(segment)
        if seg.read(3) == _PUBLISHER_TC:
            publisher = seg.bitfield(24)
    return TCString(
        version, created, updated, cmp_id, cmp_version, screen, language, vendor_list, policy, service_specific,
        special, purposes, purposes_li, one_treatment, country, consented_vendors, publisher,
    )  # fmt: skip


#: Which TCF purposes each category needs, all of them consented (docs/PRIVACY.md has
#: the reasoning): 1 store/access information on a device; 2 basic ads; 3, 4 create /
#: use profiles for personalised advertising; 5, 6 create / use profiles for
#: personalised content; 7 measure advertising performance; 8 measure content
#: performance; 9 understand audiences through statistics; 10 develop and improve
#: services.
DEFAULT_PURPOSES: Mapping[str, frozenset[int]] = {
    "analytics": frozenset({1, 8, 9, 10}),
    "personalization": frozenset({1, 5, 6}),
    "marketing": frozenset({1, 2, 3, 4, 7}),
}


def parse_purposes(spec: str) -> dict[str, frozenset[int]]:
    """``analytics:1,8,9,10;personalization:1,5,6`` → category → purposes."""
    out: dict[str, frozenset[int]] = {}
    for part in (p.strip() for p in spec.split(";") if p.strip()):
        name, _, ids = part.partition(":")
        numbers = [int(i) for i in ids.split(",") if i.strip()]
        if not name.strip() or not numbers or any(not 1 <= n <= 24 for n in numbers):
            raise ValueError(f"expected category:purpose,purpose;… with purposes 1-24, got {part!r}")
        out[name.strip()] = frozenset(numbers)
    return out


def categories(tc: TCString, purposes: Mapping[str, Iterable[int]], vendor_id: int = 0) -> frozenset[str]:
    """The consent categories a TC string grants: ``necessary`` always; a category when
    every purpose it needs is consented (and, with ``vendor_id``, that vendor too)."""
    if vendor_id and vendor_id not in tc.vendors_consent:
        return frozenset({"necessary"})
    granted = {name for name, needed in purposes.items() if all(tc.consented(p) for p in needed)}
    return frozenset(granted | {"necessary"})
