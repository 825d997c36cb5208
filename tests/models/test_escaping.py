"""Data in fragments is escaped for the context it lands in."""

from __future__ import annotations

import pytest

from models.content import BundleError, Fragment


def render(source: str, **data: str) -> str:
    return Fragment.compile("t", source).render(data)


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        " \tjava\nscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "\x01javascript:alert(1)",
    ],
)
def test_script_urls_never_reach_a_url_attribute(url: str) -> None:
    assert render('<a href="{{u}}">x</a>', u=url) == '<a href="#">x</a>'
    assert render("<img src='{{u}}'>", u=url) == "<img src='#'>"


def test_http_and_relative_urls_are_kept() -> None:
    for url in ("https://shop.example/p/1?a=1&b=2", "/p/1", "p/1", "?page=2", "#top", "//cdn.example/x.png"):
        assert render('<a href="{{u}}">', u=url) == f'<a href="{url.replace("&", "&amp;")}">'


def test_values_later_in_a_url_are_url_components() -> None:
    assert render('<a href="/c/{{c}}">', c='a b"><script>') == '<a href="/c/a%20b%22%3E%3Cscript%3E">'


def test_css_values_cannot_open_a_url_or_a_declaration() -> None:
    out = render('<span style="background:{{c}}">', c="red;background:url(javascript:alert(1))")
    assert "url(" not in out and ";" not in out.split('style="', 1)[1]
    assert render('<span style="color:{{c}}">', c="#aa3344") == '<span style="color:#aa3344">'
    assert "</style>" not in render("<style>.x{color:{{c}}}</style>", c="red}</style><script>alert(1)</script>")[:-8]


def test_script_and_handler_contexts_get_javascript_escapes() -> None:
    out = render('<script>var t = "{{t}}";</script>', t='"; alert(1); "</script>')
    assert (
        out
        == '<script>var t = "\\u0022\\u003b\\u0020alert\\u00281\\u0029\\u003b\\u0020\\u0022\\u003c\\u002fscript\\u003e";</script>'
    )
    assert "alert(" not in render("<button onclick=\"go('{{v}}')\">", v="');alert(1);//")


def test_text_and_attributes_are_html_escaped() -> None:
    assert render("<p>{{t}}</p>", t="<b>&") == "<p>&lt;b&gt;&amp;</p>"
    assert render('<p title="{{t}}">', t='"><x') == '<p title="&quot;&gt;&lt;x">'
    assert render("<p class={{t}}>", t="a onmouseover=x") == "<p class=a&#x20;onmouseover&#x3d;x>"


@pytest.mark.parametrize("source", ["<{{tag}}>", "<div {{attrs}}>", "<a href={{u}}>"])
def test_placeholders_no_value_can_fill_safely_are_refused(source: str) -> None:
    with pytest.raises(BundleError, match="no value can be made safe"):
        Fragment.compile("t", source)
