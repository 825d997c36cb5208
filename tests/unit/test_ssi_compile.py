"""``p13n templates compile``: tagged templates → nginx SSI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.slot_fallbacks import fallback_id
from edge_agent.ssi_compile import CompileError, compile_template, compile_tree

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
FB = b"c4da7e3ee93b0cb2"


def test_slot_becomes_block_and_include_with_stub() -> None:
    out = compile_template(b'<p>a</p><p13n-slot name="hero"><b>fb</b></p13n-slot><p>z</p>')
    assert out == (
        b'<p>a</p><!--# block name="p13n_fb_1" --><b>fb</b><!--# endblock -->'
        b'<!--# include virtual="/_p13n/slot/hero?rid=$request_id&fb=%s" stub="p13n_fb_1" --><p>z</p>' % FB
    )
    # the agent knows the fallback by that id (and answers it itself: edge_agent/slot_fallbacks.py)
    assert fallback_id(b"<b>fb</b>") == FB.decode()


def test_tag_attributes_are_passed_url_encoded() -> None:
    out = compile_template(b'<p13n-slot name="recs" count="4" note="a b&$x">fb</p13n-slot>')
    fb = fallback_id(b"fb").encode()
    assert b"/_p13n/slot/recs?rid=$request_id&fb=" + fb + b"&count=4&note=a%20b%26%24x" in out


def test_every_slot_gets_its_own_block() -> None:
    out = compile_template(b'<p13n-slot name="a">1</p13n-slot><p13n-slot name="a">2</p13n-slot>')
    assert re.findall(rb'stub="(p13n_fb_\d+)"', out) == [b"p13n_fb_1", b"p13n_fb_2"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (b'<p13n-slot name="a"><p13n-slot name="b">x</p13n-slot></p13n-slot>', "nested slot"),
        (b'<p13n-slot name="a">x', "unclosed slot"),
        (b'<p13n-slot name="a"><!--# echo var="x" --></p13n-slot>', "SSI command"),
    ],
)
def test_unsafe_templates_are_refused(source: bytes, message: str) -> None:
    with pytest.raises(CompileError, match=message):
        compile_template(source, "page.html")


def test_demo_templates_compile_without_leftover_tags(tmp_path: Path) -> None:
    report = compile_tree(TEMPLATES / "pages", tmp_path)
    assert len(report.compiled) == 3 and report.slots == 10
    for path in report.compiled:
        text = path.read_bytes()
        assert b"<p13n-slot" not in text and b"</p13n-slot" not in text
        assert text.count(b"<!--# include virtual=") in (3, 4)


def test_cli_compiles_and_reports_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_bytes(b'<p13n-slot name="a">x')
    ok = subprocess.run(
        [sys.executable, "-m", "p13n", "templates", "compile", str(TEMPLATES / "pages"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "compiled 3 template(s) with 10 slot(s)" in ok.stdout
    fail = subprocess.run(
        [sys.executable, "-m", "p13n", "templates", "compile", str(bad), str(tmp_path / "o2.html")],
        capture_output=True,
        text=True,
    )
    assert fail.returncode == 1 and "unclosed slot" in fail.stderr


def test_echo_mode_prints_the_decided_variable_or_the_fallback() -> None:
    out = compile_template(b'<p>a</p><p13n-slot name="top-banner"><b>fb</b></p13n-slot>', echo=True)
    assert out == (
        b'<p>a</p><!--# if expr="$p13n_slot_top_banner" --><!--# echo var="p13n_slot_top_banner" encoding="none" -->'
        b"<!--# else --><b>fb</b><!--# endif -->"
    )


def test_echo_mode_refuses_names_that_collide_as_nginx_variables() -> None:
    with pytest.raises(CompileError, match="same nginx variable"):
        compile_template(b'<p13n-slot name="a-b">1</p13n-slot><p13n-slot name="a_b">2</p13n-slot>', echo=True)
