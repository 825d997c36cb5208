"""Sans-IO scanner for ``<p13n-slot>`` markers in HTML bytes.

A page is split once into literal byte runs and slots; rendering a page is then a
join. The scan is a single regex pass over bytes, not an HTML parse: comments,
``<script>`` and ``<style>`` bodies are skipped so marker text inside them is inert.

Any structural problem (nested, unclosed or stray slot tags, a slot without a
valid name) makes the whole page *unsafe*: :func:`scan` then returns a template with
no slots and a reason, so the caller serves the page byte-for-byte intact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: Slot names become nginx block names and URL path segments.
SLOT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: Pages bigger than this are never scanned (served untouched, reason counted).
MAX_PAGE_BYTES = 16 * 1024 * 1024
#: A page with more slots than this is served untouched.
MAX_SLOTS_PER_PAGE = 64

_TOKEN_RE = re.compile(
    rb"<!--(?:.*?-->|.*\Z)"  # comment (an unclosed one runs to the end, as in HTML)
    rb"|<(?P<raw>script|style)\b[^>]*>(?:.*?</(?P=raw)\s*>|.*\Z)"  # raw-text elements
    rb"|<p13n-slot(?P<attrs>(?:\s(?:[^>\"']|\"[^\"]*\"|'[^']*')*)?)>"  # opening slot tag (quoted values may hold '>')
    rb"|</p13n-slot\s*>",  # closing slot tag
    re.IGNORECASE | re.DOTALL,
)
_ATTR_RE = re.compile(rb"""([A-Za-z_:][-A-Za-z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""")
_MARKER = b"p13n-slot"


@dataclass(frozen=True, slots=True)
class Slot:
    """One slot occurrence: its name, tag attributes and fallback HTML bytes."""

    name: str
    attrs: dict[str, str]
    fallback: bytes


@dataclass(frozen=True, slots=True)
class Template:
    """A scanned page: ``parts`` alternates literal bytes and :class:`Slot` objects.

    ``reason`` is empty when the page was scanned cleanly (with or without slots),
    otherwise it names why the page is served untouched.
    """

    parts: tuple[bytes | Slot, ...]
    reason: str = ""
    slots: tuple[Slot, ...] = field(default=())

    def render(self, fill: dict[str, bytes]) -> bytes:
        """Join the page, replacing each slot with ``fill[name]`` or its fallback."""
        out: list[bytes] = []
        for part in self.parts:
            if isinstance(part, bytes):
                out.append(part)
            else:
                out.append(fill.get(part.name, part.fallback))
        return b"".join(out)


def parse_attrs(raw: bytes) -> dict[str, str]:
    """Parse tag attributes (any order, double/single/no quotes); names lower-cased."""
    attrs: dict[str, str] = {}
    for m in _ATTR_RE.finditer(raw):
        name = m.group(1).decode("ascii").lower()
        value = m.group(2)
        if value is None:
            value = m.group(3)
        if value is None:
            value = m.group(4)
        if name not in attrs:  # first occurrence wins, as in HTML
            attrs[name] = (value or b"").decode("utf-8", "replace")
    return attrs


def _untouched(body: bytes, reason: str) -> Template:
    return Template(parts=(body,), reason=reason)


def scan(body: bytes) -> Template:
    """Split ``body`` into literals and slots, or return it whole with a reason."""
    if len(body) > MAX_PAGE_BYTES:
        return _untouched(body, "page_too_large")
    if _MARKER not in body and _MARKER not in body.lower():
        return Template(parts=(body,))
    parts: list[bytes | Slot] = []
    slots: list[Slot] = []
    pos = 0  # end of the last literal emitted
    open_start = -1
    open_end = -1
    open_attrs: dict[str, str] = {}
    for m in _TOKEN_RE.finditer(body):
        tok = m.group(0)
        if tok[1:2] == b"!" or m.group("raw") is not None:
            continue  # inert text; inside a fallback it stays part of the fallback
        if tok[1:2] == b"/":
            if open_start < 0:
                return _untouched(body, "stray_close")
            fallback = body[open_end : m.start()]
            name = open_attrs.get("name", "")
            if not SLOT_NAME_RE.match(name):
                return _untouched(body, "bad_slot_name")
            slot = Slot(name=name, attrs=open_attrs, fallback=fallback)
            parts.append(body[pos:open_start])
            parts.append(slot)
            slots.append(slot)
            if len(slots) > MAX_SLOTS_PER_PAGE:
                return _untouched(body, "too_many_slots")
            pos = m.end()
            open_start = -1
            continue
        if open_start >= 0:
            return _untouched(body, "nested_slot")
        open_start = m.start()
        open_end = m.end()
        open_attrs = parse_attrs(m.group("attrs") or b"")
    if open_start >= 0:
        return _untouched(body, "unclosed_slot")
    parts.append(body[pos:])
    return Template(parts=tuple(parts), slots=tuple(slots))
