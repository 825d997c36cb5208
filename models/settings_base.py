"""Helpers to read typed settings from an environment mapping.

Both deployables build a frozen dataclass from ``os.environ``-like mappings; these
helpers name the offending variable in every error (``SettingsError``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import Field, field, fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: HTTP servers a service can run under (see p13n/serve.py).
SERVERS = ("granian", "uvicorn")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


class SettingsError(ValueError):
    """A setting is missing or malformed; ``name`` is the environment variable."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"{name}: {problem}")


def env_str(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, default)


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise SettingsError(name, f"expected an integer, got {raw!r}") from e
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise SettingsError(name, f"must be {bound}, got {value}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as e:
        raise SettingsError(name, f"expected a number, got {raw!r}") from e
    if value < minimum:
        raise SettingsError(name, f"must be >= {minimum}, got {value}")
    return value


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(name, f"expected true/false, got {raw!r}")


def env_host_port(env: Mapping[str, str], name: str, default: str) -> tuple[str, int]:
    raw = env.get(name) or default
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SettingsError(name, f"expected HOST:PORT, got {raw!r}")
    return host, int(port)


def env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    """A lower-cased value that must be one of ``choices``."""
    value = env_str(env, name, default).lower()
    if value not in choices:
        raise SettingsError(name, f"expected one of {choices}, got {value!r}")
    return value


def env_list(env: Mapping[str, str], name: str, default: tuple[str, ...], *, lower: bool = True) -> tuple[str, ...]:
    """A comma-separated list (blank items dropped)."""
    raw = env.get(name)
    if raw is None:
        return default
    items = (i.strip() for i in raw.split(","))
    return tuple(i.lower() if lower else i for i in items if i)


def env_networks(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list of IP networks (``10.0.0.0/8``, ``127.0.0.1``), validated."""
    import ipaddress

    items = env_list(env, name, default)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as e:
            raise SettingsError(name, f"{item!r} is not an IP address or network") from e
    return items


# ---------------------------------------------------------------- declared once
# Each setting is one dataclass field made by :func:`setting`: its default, its doc, its
# environment variable (PREFIX + NAME unless given), how it is parsed and checked, and
# whether it is a secret. The loader (:func:`load`), docs/SETTINGS.md's tables
# (:func:`markdown_table`, compared by a test) and the commands' help (:func:`help_text`)
# are all derived from those fields.

#: A parser: (environment, variable name, default) → value; raises SettingsError.
Parser = Callable[[Mapping[str, str], str, Any], Any]


def setting(
    default: Any,
    doc: str,
    *,
    env: str = "",
    parse: Parser | None = None,
    secret: bool = False,
    shown: str = "",
    minimum: float | None = None,
    maximum: int | None = None,
) -> Any:
    """A settings field. ``env``: the variable's suffix when it is not the field's name;
    ``parse``: a custom parser (default: by the field's type); ``shown``: the default as
    the docs show it (default: the value itself); secrets stay out of ``repr``."""
    meta = {
        "doc": doc,
        "env": env,
        "parse": parse,
        "secret": secret,
        "shown": shown,
        "minimum": minimum,
        "maximum": maximum,
    }
    if isinstance(default, list | dict | set):
        raise TypeError("settings defaults are immutable (use a tuple)")
    return field(default=default, repr=not secret, metadata=meta)


def names_as_given(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list kept in its case (cookie names, API keys)."""
    return env_list(env, name, default, lower=False)


def log_level(env: Mapping[str, str], name: str, default: str) -> str:
    return env_choice(env, name, default, LOG_LEVELS)


def log_format(env: Mapping[str, str], name: str, default: str) -> str:
    from models.logs import LOG_FORMATS

    return env_choice(env, name, default, LOG_FORMATS)


def segment_kinds(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Comma-separated clustering kinds for segments (at least one)."""
    kinds = env_list(env, name, default)
    unknown = [k for k in kinds if k not in ("kmeans", "gmm", "dbscan")]
    if unknown or not kinds:
        raise SettingsError(name, f"expected some of kmeans, gmm, dbscan, got {env.get(name)!r}")
    return kinds


def server(env: Mapping[str, str], name: str, default: str) -> str:
    return env_choice(env, name, default, SERVERS)


def env_name(f: Field[Any], prefix: str) -> str:
    return prefix + (f.metadata.get("env") or f.name.upper())


def env_names(cls: type, prefix: str) -> dict[str, str]:
    """Field name → environment variable."""
    return {f.name: env_name(f, prefix) for f in fields(cls)}


def _parse_by_type(f: Field[Any], env: Mapping[str, str], name: str) -> Any:
    kind = str(f.type)
    meta = f.metadata
    default: Any = f.default
    if kind == "bool":
        return env_bool(env, name, default)
    if kind == "int":
        lo = int(meta["minimum"]) if meta.get("minimum") is not None else 0
        return env_int(env, name, default, minimum=lo, maximum=meta.get("maximum"))
    if kind == "float":
        lo_f = float(meta["minimum"]) if meta.get("minimum") is not None else 0.0
        return env_float(env, name, default, minimum=lo_f)
    if kind == "Path":
        return Path(env_str(env, name, str(default)))
    if kind == "tuple[str, int]":
        return env_host_port(env, name, f"{default[0]}:{default[1]}")
    if kind == "tuple[str, ...]":
        return env_list(env, name, default)
    if kind == "str":
        return env_str(env, name, default)
    raise TypeError(f"no parser for {f.name}: {kind}")


def load(cls: type[T], prefix: str, env: Mapping[str, str]) -> T:
    """An instance of the settings class ``cls`` from ``env``; every error names its
    variable. Cross-field rules live in the class's ``check()`` (called after)."""
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        name = env_name(f, prefix)
        parser = f.metadata.get("parse")
        values[f.name] = parser(env, name, f.default) if parser is not None else _parse_by_type(f, env, name)
    made = cls(**values)
    check = getattr(made, "check", None)
    if check is not None:
        check()
    return made


def _shown(f: Field[Any]) -> str:
    meta = f.metadata
    if meta.get("shown"):
        return str(meta["shown"])
    value = f.default
    if value in ("", ()):
        return "*(empty)*"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
        return f"`{value[0]}:{value[1]}`"
    if isinstance(value, tuple):
        return "`" + ",".join(str(v) for v in value) + "`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`" if value >= 10 else f"`{value}`"
    return f"`{value}`"


def markdown_table(cls: type, prefix: str) -> str:
    """The settings of ``cls`` as docs/SETTINGS.md shows them."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for f in fields(cls):
        doc = f.metadata["doc"] + (" *Secret: never logged.*" if f.metadata.get("secret") else "")
        lines.append(f"| `{env_name(f, prefix)}` | {_shown(f)} | {doc} |")
    return "\n".join(lines) + "\n"


def help_text(cls: type, prefix: str) -> str:
    """The settings of ``cls`` for a command's ``--help`` (variable and default)."""
    out = ["settings (environment variables; docs/SETTINGS.md):"]
    for f in fields(cls):
        out.append(f"  {env_name(f, prefix):<40} {_shown(f).replace('`', '').replace('*', '')}")
    return "\n".join(out)
