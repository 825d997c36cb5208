"""Byte-level page rewriting: content decoding, charsets, slot filling (sans-IO)."""

from __future__ import annotations

import codecs
import zlib
from dataclasses import dataclass

from models.slots import Template, scan

#: Content-Encodings the agent can undo to rewrite a page.
DECODABLE = ("gzip", "x-gzip", "deflate", "identity", "")


class UndecodableBody(ValueError):
    """The origin body uses an encoding the agent cannot undo (or is corrupt)."""

    def __init__(self, encoding: str, problem: str) -> None:
        self.encoding = encoding
        super().__init__(f"cannot decode {encoding!r} body: {problem}")


def decode_body(body: bytes, content_encoding: str, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (gzip/deflate), refusing output above ``limit`` bytes."""
    enc = content_encoding.strip().lower()
    if enc in ("", "identity"):
        return body
    if enc not in DECODABLE:
        raise UndecodableBody(enc, "unsupported encoding")
    wbits = 16 + zlib.MAX_WBITS if enc in ("gzip", "x-gzip") else zlib.MAX_WBITS
    try:
        d = zlib.decompressobj(wbits)
        out = d.decompress(body, limit + 1)
    except zlib.error:
        if enc != "deflate":
            raise UndecodableBody(enc, "corrupt stream") from None
        try:  # raw deflate without zlib header, as some servers send
            d = zlib.decompressobj(-zlib.MAX_WBITS)
            out = d.decompress(body, limit + 1)
        except zlib.error as e:
            raise UndecodableBody(enc, str(e)) from e
    if len(out) > limit or d.unconsumed_tail:
        raise UndecodableBody(enc, "decoded body exceeds the page size limit")
    return out


#: Browsers decode these labels as windows-1252 (WHATWG Encoding), so fills must be
#: encoded the same way.
_WINDOWS_1252_ALIASES = ("iso8859-1", "ascii", "latin-1", "cp1252")


def charset_of(content_type: str) -> str:
    """The ``charset`` parameter of a Content-Type, normalised; utf-8 by default."""
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "charset":
            name = value.strip().strip("\"'")
            try:
                codec = codecs.lookup(name).name
            except LookupError:
                return "utf-8"
            return "cp1252" if codec in _WINDOWS_1252_ALIASES else codec
    return "utf-8"


def ascii_compatible(charset: str) -> bool:
    """True when slot markers (ASCII) appear as-is in bytes of this charset."""
    try:
        return "<p13n-slot>".encode(charset) == b"<p13n-slot>" and not charset.startswith(("utf-16", "utf-32"))
    except (LookupError, UnicodeError):
        return False


def is_html(content_type: str) -> bool:
    ctype = content_type.split(";", 1)[0].strip().lower()
    return ctype in ("text/html", "application/xhtml+xml")


@dataclass(frozen=True, slots=True)
class PreparedPage:
    """A scanned page plus the charset its fills must be encoded in."""

    template: Template
    charset: str
    content_type: str


def prepare(body: bytes, content_type: str) -> PreparedPage:
    """Scan a decoded HTML body; pages in non-ASCII-compatible charsets become UTF-8."""
    charset = charset_of(content_type)
    if not ascii_compatible(charset):
        try:
            body = body.decode(charset).encode("utf-8")
        except (UnicodeError, LookupError):
            return PreparedPage(Template(parts=(body,), reason="bad_charset"), charset, content_type)
        charset = "utf-8"
        content_type = "text/html; charset=utf-8"
    return PreparedPage(scan(body), charset, content_type)


def render(page: PreparedPage, fills: dict[str, str]) -> bytes:
    """Fill the page's slots; slots without a fill keep their fallback bytes."""
    if not page.template.slots:
        return page.template.render({})
    charset = page.charset
    encoded = {name: text.encode(charset, "xmlcharrefreplace") for name, text in fills.items()}
    return page.template.render(encoded)
