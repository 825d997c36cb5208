"""Context-aware escaping of data placed into trusted HTML fragments (sans-IO).

A fragment is trusted HTML written by the site owner; the values that fill its
``{{field}}`` placeholders are not (catalog rows, CRM attributes, the visitor's own
session). What makes a value safe depends on where the placeholder sits, so each
placeholder's context is found once, when the fragment is compiled, by scanning the
HTML around it:

* text and quoted attributes: HTML-escaped;
* URL attributes (``href``, ``src`` …) at the start of the value: only ``http(s)``
  and relative URLs survive (``javascript:``, ``data:`` … become ``#``), then
  HTML-escaped; later in the value: percent-encoded as a URL component;
* ``style`` attributes and ``<style>`` elements: every character but letters, digits,
  space, ``#``, ``.``, ``,``, ``%`` and ``-`` becomes a CSS escape (``\\28 ``), so a
  value cannot start a ``url(…)`` or a new declaration;
* ``on*`` attributes and ``<script>`` elements: every character but letters and digits
  becomes a JavaScript ``\\uXXXX`` escape (safe inside and outside string literals);
* unquoted attribute values: every character but letters and digits becomes an HTML
  character reference.

A placeholder where no value can be made safe (a tag or attribute name) is refused at
compile time.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from urllib.parse import quote

URL_ATTRIBUTES = frozenset(
    {"href", "src", "action", "formaction", "poster", "cite", "background", "ping", "xlink:href", "data", "codebase", "srcset"}
)
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):", re.IGNORECASE)
_URL_IGNORED = re.compile(r"[\x00-\x20\x7f]")  # browsers drop these before reading the scheme
_ALNUM = re.compile(r"[A-Za-z0-9]")
_CSS_SAFE = re.compile(r"[A-Za-z0-9 #.,%\-]")
#: Characters a URL component keeps as they are.
_URL_PART_SAFE = "/:?#[]@!$&'()*+,;=%-._~"
#: What an unsafe URL becomes.
SAFE_URL_FALLBACK = "#"


class UnsafePlaceholder(ValueError):
    """A placeholder sits where no value could be made safe."""


def html_text(value: str) -> str:
    return html.escape(value, quote=True)


def url_start(value: str) -> str:
    """An http(s) or relative URL, HTML-escaped; any other scheme becomes ``#``."""
    probe = _URL_IGNORED.sub("", value)
    m = _SCHEME.match(probe)
    if m and m.group(1).lower() not in ("http", "https"):
        return SAFE_URL_FALLBACK
    return html.escape(value.strip(), quote=True)


def url_part(value: str) -> str:
    return html.escape(quote(value, safe=_URL_PART_SAFE), quote=True)


def css(value: str) -> str:
    return html.escape("".join(c if _CSS_SAFE.match(c) else f"\\{ord(c):x} " for c in value), quote=True)


def script(value: str) -> str:
    return html.escape("".join(c if _ALNUM.match(c) else f"\\u{ord(c):04x}" for c in value), quote=True)


def unquoted_attribute(value: str) -> str:
    return "".join(c if _ALNUM.match(c) else f"&#x{ord(c):x};" for c in value)


ESCAPERS: dict[str, Callable[[str], str]] = {
    "html": html_text,
    "url": url_start,
    "url_part": url_part,
    "css": css,
    "script": script,
    "unquoted": unquoted_attribute,
}


def placeholder_contexts(pieces: Sequence[str]) -> tuple[str, ...]:
    """The context of every placeholder of a split fragment (literal HTML at even
    indexes, field names at odd ones); raises :class:`UnsafePlaceholder`."""
    scanner = _Scanner()
    out: list[str] = []
    for i, piece in enumerate(pieces):
        if i % 2:
            out.append(scanner.context(piece))
        else:
            scanner.feed(piece)
    return tuple(out)


class _Scanner:
    """A small HTML tokenizer that knows, at each point, which context it is in."""

    def __init__(self) -> None:
        self.state = "text"  # text, tagname, tag, attrname, beforevalue, value, raw, comment
        self.tag = ""
        self.closing = False
        self.attr = ""
        self.quote = ""
        self.value_started = False
        self.raw = ""  # "script" or "style" while inside one
        self.open_bracket = False  # the literal so far ends with "<" or "</": a tag name comes next

    def context(self, field: str) -> str:
        s = self.state
        if s == "text" and self.open_bracket:
            return _refuse(field, "a tag name")
        if s in ("text", "comment"):
            return "html"
        if s == "raw":
            return "script" if self.raw == "script" else "css"
        if s == "beforevalue":  # attr={{field}}: an unquoted value starts here
            self.state, self.quote, self.value_started = "value", "", False
        if self.state == "value":
            attr = self.attr.lower()
            started, self.value_started = self.value_started, True
            if attr.startswith("on"):
                kind = "script"
            elif attr == "style":
                kind = "css"
            elif attr in URL_ATTRIBUTES:
                kind = "url_part" if started else "url"
            else:
                kind = "html"
            if not self.quote:
                return "unquoted" if kind in ("html", "url_part") else _refuse(field, f"unquoted {attr} attribute")
            return kind
        return _refuse(field, "inside a tag or attribute name")

    def _end_tag(self) -> None:
        name = self.tag.lower()
        self.state = "raw" if not self.closing and name in ("script", "style") else "text"
        self.raw = name if self.state == "raw" else ""

    def feed(self, text: str) -> None:
        i, n = 0, len(text)
        while i < n:
            ch = text[i]
            s = self.state
            if s == "text":
                if text.startswith("<!--", i):
                    self.state, i = "comment", i + 4
                    continue
                if ch == "<" and i + 1 < n and (text[i + 1].isalpha() or text[i + 1] == "/"):
                    self.state, self.tag, self.closing = "tagname", "", text[i + 1] == "/"
                    i += 2 if self.closing else 1
                    continue
            elif s == "comment":
                if text.startswith("-->", i):
                    self.state, i = "text", i + 3
                    continue
            elif s == "raw":
                if text[i : i + 2 + len(self.raw)].lower() == "</" + self.raw:
                    self.state, self.tag, self.closing = "tagname", "", True
                    i += 2
                    continue
            elif s == "tagname":
                if ch.isalnum() or ch in "-:":
                    self.tag += ch
                elif ch == ">":
                    self._end_tag()
                else:
                    self.state = "tag"
            elif s == "tag":
                if ch == ">":
                    self._end_tag()
                elif not ch.isspace() and ch != "/":
                    self.state, self.attr = "attrname", ch
            elif s == "attrname":
                if ch == "=":
                    self.state = "beforevalue"
                elif ch == ">":
                    self._end_tag()
                elif ch.isspace() or ch == "/":
                    self.state = "tag"
                else:
                    self.attr += ch
            elif s == "beforevalue":
                if ch in "\"'":
                    self.state, self.quote, self.value_started = "value", ch, False
                elif ch == ">":
                    self._end_tag()
                elif not ch.isspace():
                    self.state, self.quote, self.value_started = "value", "", True
            elif s == "value":
                if (ch == self.quote) if self.quote else ch.isspace():
                    self.state = "tag"
                elif not self.quote and ch == ">":
                    self._end_tag()
                else:
                    self.value_started = True
            i += 1
        self.open_bracket = self.state == "text" and text.endswith(("<", "</"))


def _refuse(field: str, where: str) -> str:
    raise UnsafePlaceholder(f"placeholder {{{{{field}}}}} is {where}: no value can be made safe there")
