"""Helpers to read typed settings from an environment mapping.

Both deployables build a frozen dataclass from ``os.environ``-like mappings; these
helpers name the offending variable in every error (``SettingsError``).
"""

from __future__ import annotations

from collections.abc import Mapping

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
