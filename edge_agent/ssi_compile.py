"""``p13n templates compile``: tagged templates → nginx SSI templates (sans-IO core).

Each ``<p13n-slot name="N" a="v">fallback</p13n-slot>`` becomes::

    <!--# block name="p13n_fb_K" -->fallback<!--# endblock --><!--# include
        virtual="/_p13n/slot/N?rid=$request_id&fb=ID&a=v" stub="p13n_fb_K" -->

so nginx prints the fallback whenever the agent is down, slow or answers empty. ``fb``
names the fallback (edge_agent/slot_fallbacks.py): when the agent decides a slot shows
its fallback it answers that HTML itself, because nginx prints a stub twice when its
request completes while an earlier include is pending (nginx issue 426).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from edge_agent.slot_fallbacks import fallback_id
from models.slots import Slot, scan

#: File endings compiled; everything else is copied unchanged.
TEMPLATE_SUFFIXES = (".html", ".htm", ".shtml")


class CompileError(ValueError):
    """A template cannot be compiled safely; ``where`` names the file or slot."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


def _include(slot: Slot, block: str) -> bytes:
    params = [("rid", "$request_id"), ("fb", fallback_id(slot.fallback))]
    params += [(k, v) for k, v in slot.attrs.items() if k not in ("name", "rid", "u", "fb")]
    # '$' in user values would be expanded by nginx: percent-encode everything but our variable
    query = "&".join(f"{quote(k, safe='')}={v if k == 'rid' else quote(v, safe='')}" for k, v in params)
    return f'<!--# include virtual="/_p13n/slot/{slot.name}?{query}" stub="{block}" -->'.encode("ascii")


def slot_variable(name: str) -> str:
    """nginx variable holding a slot's HTML in one-round-trip mode."""
    return "p13n_slot_" + name.replace("-", "_").lower()


def compile_template(source: bytes, where: str = "<template>", echo: bool = False) -> bytes:
    """Rewrite one tagged template to SSI; raises :class:`CompileError` on unsafe input.

    ``echo``: one-round-trip mode, each slot prints the variable nginx filled from the
    page's decision (``auth_request_set``) or, when empty, its fallback.
    """
    template = scan(source)
    if template.reason:
        raise CompileError(where, f"cannot compile: {template.reason.replace('_', ' ')}")
    out: list[bytes] = []
    variables: dict[str, str] = {}
    index = 0
    for part in template.parts:
        if isinstance(part, bytes):
            out.append(part)
            continue
        if b"<!--#" in part.fallback:
            raise CompileError(f"{where}: slot {part.name}", "fallback contains an SSI command")
        index += 1
        if echo:
            var = slot_variable(part.name)
            owner = variables.setdefault(var, part.name)
            if owner != part.name:
                raise CompileError(where, f"slots {owner!r} and {part.name!r} map to the same nginx variable")
            out.append(f'<!--# if expr="${var}" --><!--# echo var="{var}" encoding="none" --><!--# else -->'.encode("ascii"))
            out.append(part.fallback)
            out.append(b"<!--# endif -->")
            continue
        block = f"p13n_fb_{index}"
        out.append(f'<!--# block name="{block}" -->'.encode("ascii"))
        out.append(part.fallback)
        out.append(b"<!--# endblock -->")
        out.append(_include(part, block))
    return b"".join(out)


@dataclass(frozen=True)
class CompileReport:
    compiled: tuple[Path, ...]
    copied: tuple[Path, ...]
    slots: int


def compile_tree(src: Path, dst: Path, echo: bool = False) -> CompileReport:
    """Compile every template under ``src`` into ``dst`` (a file or a directory)."""
    if src.is_file():
        pairs = [(src, dst / src.name if dst.is_dir() else dst)]
    elif src.is_dir():
        pairs = [(p, dst / p.relative_to(src)) for p in sorted(src.rglob("*")) if p.is_file()]
    else:
        raise CompileError(str(src), "no such file or directory")
    compiled: list[Path] = []
    copied: list[Path] = []
    slots = 0
    for source, target in pairs:
        target.parent.mkdir(parents=True, exist_ok=True)
        data = source.read_bytes()
        if source.suffix.lower() in TEMPLATE_SUFFIXES:
            result = compile_template(data, str(source), echo=echo)
            slots += result.count(b"<!--# include ") + result.count(b'<!--# echo var="p13n_slot_')
            target.write_bytes(result)
            compiled.append(target)
        else:
            target.write_bytes(data)
            copied.append(target)
    return CompileReport(tuple(compiled), tuple(copied), slots)
