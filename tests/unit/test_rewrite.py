"""Content decoding, charsets and filling slots in encoded pages."""

from __future__ import annotations

import gzip
import zlib

import pytest

from edge_agent.rewrite import UndecodableBody, charset_of, decode_body, is_html, prepare, render

PAGE = '<p>Grüße</p><p13n-slot name="hero">fb</p13n-slot>'


def test_gzip_body_is_decoded() -> None:
    assert decode_body(gzip.compress(PAGE.encode()), "gzip", 10_000) == PAGE.encode()


def test_deflate_with_and_without_zlib_header() -> None:
    raw = PAGE.encode()
    assert decode_body(zlib.compress(raw), "deflate", 10_000) == raw
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decode_body(c.compress(raw) + c.flush(), "deflate", 10_000) == raw


def test_decompression_bomb_is_refused() -> None:
    bomb = gzip.compress(b"\0" * 5_000_000)
    with pytest.raises(UndecodableBody, match="exceeds"):
        decode_body(bomb, "gzip", 1_000_000)


def test_unknown_or_corrupt_encoding_is_refused() -> None:
    with pytest.raises(UndecodableBody):
        decode_body(b"abc", "br", 100)
    with pytest.raises(UndecodableBody):
        decode_body(b"not gzip", "gzip", 100)


def test_charset_parameter_is_normalised() -> None:
    assert charset_of("text/html; charset=ISO-8859-1") == "cp1252"  # as browsers decode it
    assert charset_of('text/html; charset="utf-8"') == "utf-8"
    assert charset_of("text/html") == "utf-8"
    assert charset_of("text/html; charset=no-such-charset") == "utf-8"
    assert is_html("text/html; charset=utf-8") and not is_html("application/json")


def test_fill_is_encoded_in_the_page_charset() -> None:
    page = prepare(PAGE.encode("latin-1"), "text/html; charset=iso-8859-1")
    out = render(page, {"hero": "Tokyo 東京 € Ā"})
    assert out == "<p>Grüße</p>Tokyo &#26481;&#20140; € &#256;".encode("cp1252")


def test_utf16_page_is_transcoded_to_utf8() -> None:
    page = prepare(PAGE.encode("utf-16"), "text/html; charset=utf-16")
    assert page.content_type == "text/html; charset=utf-8"
    assert render(page, {"hero": "H"}) == "<p>Grüße</p>H".encode()
