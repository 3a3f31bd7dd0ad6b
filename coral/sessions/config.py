"""coral-server's ``config.toml``, for the sections a node honours.

coral-server reads its configuration from the file named by
``CONFIG_FILE_PATH`` and lets ``--section.key=value`` arguments override single
keys. A node reads the same file for ``[network]`` (bind address and port,
webhook secret), ``[auth] keys``, ``[registry]`` (``localAgents``,
``includeCoralHomeAgents``) and ``[session] defaultWaitTimeout``; other
sections are accepted and ignored. The node's own configuration still decides
everything else (data dir, gRPC, its own HTTP port).
"""

from __future__ import annotations

import json
import secrets
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_ENV = "CONFIG_FILE_PATH"
MAX_WAIT_CAP_MS = 60_000


class CoralServerConfigError(Exception):
    """The coral-server config file or an override is invalid (the message says which key)."""


@dataclass(frozen=True)
class CoralServerConfig:
    """What a node takes from a coral-server ``config.toml``."""

    #: None: serve the coral-server API on the node's own HTTP listener only.
    bind_address: str | None = None
    bind_port: int | None = None
    webhook_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    custom_tool_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    auth_keys: tuple[str, ...] = ()
    local_agents: tuple[str, ...] = ()
    include_coral_home_agents: bool = True
    #: Rescan the registry every this many seconds (0: read once at start).
    rescan_s: float = 0.0
    default_wait_ms: int = MAX_WAIT_CAP_MS
    #: The longest a wait tool may block (coral-server: 60 s, fixed).
    max_wait_ms: int = MAX_WAIT_CAP_MS
    source: Path | None = None


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration_s(value: Any, where: str) -> float:
    """A Hoplite-style duration: ``30s``, ``5m``, ``250ms``, ``PT30S`` or a number of ms."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value / 1000
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if text.startswith("pt") and text.endswith("s") and text[2:-1].replace(".", "").isdigit():
            return float(text[2:-1])
        for unit in ("ms", "s", "m", "h"):
            number = text.removesuffix(unit)
            if text.endswith(unit) and number.replace(".", "", 1).isdigit():
                return float(number) * _UNITS[unit]
    raise CoralServerConfigError(f"{where} must be a duration like 30s, 5m or PT30S")


def _parse_override(raw: str) -> tuple[list[str], Any]:
    if not raw.startswith("--") or "=" not in raw or "." not in raw.split("=", 1)[0]:
        raise CoralServerConfigError(f"override {raw!r} is not --section.key=value")
    key, value = raw[2:].split("=", 1)
    try:
        parsed: Any = json.loads(value)
    except ValueError:
        parsed = value
    return key.split("."), parsed


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``data`` with each ``--section.key=value`` set (values parsed as JSON when they are)."""
    for raw in overrides:
        path, value = _parse_override(raw)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise CoralServerConfigError(f"override {raw!r}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return data


def _section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = data.get(name, {})
    if not isinstance(section, Mapping):
        raise CoralServerConfigError(f"[{name}] must be a table")
    return section


def _typed(section: Mapping[str, Any], where: str, key: str, kind: type, default: Any) -> Any:
    value = section.get(key, default)
    if value is default:
        return value
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise CoralServerConfigError(f"[{where}] {key} must be a {kind.__name__}")
    return value


def parse_config(
    data: Mapping[str, Any], source: Path | None = None, max_wait_ms: int = MAX_WAIT_CAP_MS
) -> CoralServerConfig:
    """The node-relevant part of a parsed coral-server config."""
    network = _section(data, "network")
    auth = _section(data, "auth")
    registry = _section(data, "registry")
    session = _section(data, "session")
    keys = _typed(auth, "auth", "keys", list, [])
    agents = _typed(registry, "registry", "localAgents", list, [])
    if not all(isinstance(k, str) and k for k in keys):
        raise CoralServerConfigError("[auth] keys must be non-empty strings")
    if not all(isinstance(a, str) for a in agents):
        raise CoralServerConfigError("[registry] localAgents must be strings")
    port = _typed(network, "network", "bindPort", int, None)
    if port is not None and not 0 <= port <= 65535:
        raise CoralServerConfigError("[network] bindPort must be 0..65535")
    wait = _typed(session, "session", "defaultWaitTimeout", int, MAX_WAIT_CAP_MS)
    if wait <= 0:
        raise CoralServerConfigError("[session] defaultWaitTimeout must be positive")
    base = Path(source).parent if source is not None else Path.cwd()
    return CoralServerConfig(
        bind_address=_typed(network, "network", "bindAddress", str, None),
        bind_port=port,
        webhook_secret=_typed(network, "network", "webhookSecret", str, secrets.token_hex(16)),
        custom_tool_secret=_typed(
            network, "network", "customToolSecret", str, secrets.token_hex(16)
        ),
        auth_keys=tuple(keys),
        local_agents=tuple(str(base / a) if not Path(a).is_absolute() else a for a in agents),
        include_coral_home_agents=_typed(
            registry, "registry", "includeCoralHomeAgents", bool, True
        ),
        rescan_s=parse_duration_s(
            registry.get("localAgentRescanTimer", 0), "[registry] localAgentRescanTimer"
        ),
        default_wait_ms=min(wait, max_wait_ms),
        max_wait_ms=max_wait_ms,
        source=source,
    )


def load_coral_server_config(
    env: Mapping[str, str], overrides: Sequence[str] = (), max_wait_ms: int = MAX_WAIT_CAP_MS
) -> CoralServerConfig:
    """Read ``$CONFIG_FILE_PATH`` (when set) plus overrides; defaults otherwise."""
    path_text = env.get(CONFIG_ENV)
    data: dict[str, Any] = {}
    source = None
    if path_text:
        source = Path(path_text).expanduser()
        try:
            data = tomllib.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CoralServerConfigError(f"{CONFIG_ENV}: {source} not found") from None
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise CoralServerConfigError(f"{source}: {exc}") from None
    return parse_config(apply_overrides(data, overrides), source, max_wait_ms)
