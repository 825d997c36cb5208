"""IAB GPP strings: the header's section ids and the US National section's opt-outs
(sans-IO), for the edge's order of consent signals (models/consent.py).

A GPP string is ``header~section~section…``; the header (web-safe base64) holds its
type (3), version and the ids of the sections that follow, in order, as Fibonacci-coded
offsets. Read here: section 7 (``usnat``, versions 1 and 2): the sale, sharing and
targeted-advertising opt-outs (1 opted out, 2 not, 0 not applicable) and its GPC
subsection. Other sections (the EU TCF one, the US state ones, the old US Privacy
string) are listed but not read: state sections carry the same opt-outs under their
own layouts, and sites that send them also send ``usnat``. Anything that does not
parse raises :class:`GppError` with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.tcf import MAX_CHARS, TcfError, bits_of

USNAT = 7


class GppError(TcfError):
    """A GPP string that cannot be read (``reason`` as for TC strings: the same reader)."""


@dataclass(frozen=True)
class UsNat:
    version: int
    sale_opt_out: int
    sharing_opt_out: int
    targeted_advertising_opt_out: int
    gpc: bool

    @property
    def opted_out(self) -> bool:
        """Out of sale, sharing or targeted advertising (1 = opted out)."""
        return 1 in (self.sale_opt_out, self.sharing_opt_out, self.targeted_advertising_opt_out)


@dataclass(frozen=True)
class GppString:
    section_ids: tuple[int, ...]
    usnat: UsNat | None


def _fibonacci(bits: object) -> int:
    """One Fibonacci-coded integer: a bit per Fibonacci number (1, 2, 3, 5, …) until two 1s."""
    read = bits.read  # type: ignore[attr-defined]
    a, b, value, last = 1, 2, 0, 0
    for _ in range(32):
        bit = read(1)
        if bit and last:
            return value
        if bit:
            value += a
        a, b, last = b, a + b, bit
    raise GppError("bad_fibonacci", "no terminator within 32 bits")


def _header(segment: str) -> tuple[int, ...]:
    bits = bits_of(segment)
    kind, version = bits.read(6), bits.read(6)
    if kind != 3:
        raise GppError("bad_header", f"type {kind}")
    if version != 1:
        raise GppError("unsupported_version", str(version))
    ids: list[int] = []
    previous = 0
    for _ in range(bits.read(12)):
        if bits.read(1):  # a range
            start = previous + _fibonacci(bits)
            end = start + _fibonacci(bits)
            ids.extend(range(start, end + 1))
            previous = end
        else:
            previous += _fibonacci(bits)
            ids.append(previous)
    return tuple(ids)


def _usnat(section: str) -> UsNat:
    core, *subsections = section.split(".")
    bits = bits_of(core)
    version = bits.read(6)
    if version not in (1, 2):
        raise GppError("unsupported_usnat_version", str(version))
    for _ in range(6):  # the six notices
        bits.read(2)
    sale, sharing, targeted = bits.read(2), bits.read(2), bits.read(2)
    gpc = False
    for sub in subsections:
        sub_bits = bits_of(sub)
        if sub_bits.read(2) == 1:  # the GPC subsection
            gpc = bool(sub_bits.read(1))
    return UsNat(version, sale, sharing, targeted, gpc)


def decode(gpp: str) -> GppString:
    if not gpp or len(gpp) > MAX_CHARS:
        raise GppError("bad_length", f"{len(gpp)} characters")
    header, *sections = gpp.strip().split("~")
    try:
        ids = _header(header)
        if len(ids) != len(sections):
            raise GppError("section_count", f"header names {len(ids)}, {len(sections)} follow")
        usnat = _usnat(sections[ids.index(USNAT)]) if USNAT in ids else None
    except GppError:
        raise
    except TcfError as e:  # the shared bit reader's errors (bad base64, truncated)
        raise GppError(e.reason, str(e)) from e
    return GppString(ids, usnat)
