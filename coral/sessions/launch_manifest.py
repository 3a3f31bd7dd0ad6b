"""What the launcher reads from a ``coral-agent.toml``: command line, env, option values.

The node parses manifests with its own edition 3/4 parser
(``coral.sessions.manifest``, the one its coral-server registry uses) and
hands a child everything it needs in environment variables, so the node never
imports the SDK that most launched agents are written with.
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coral.protocol.errors import CoralError, InvalidMessage
from coral.sessions.manifest import RegistryAgent, parse_manifest

#: Where the repository's registry lives, for resolving manifests by bare name.
REGISTRY_DIR = Path(__file__).resolve().parents[2] / "registry"
_PYTHONS = ("python", "python3")
_BOOLS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


class InvalidLaunch(InvalidMessage):
    """A launch request that cannot be honoured (bad replica count, unknown manifest...)."""

    reason = "invalid_launch"


def find_manifest(ref: str, registry_dir: Path = REGISTRY_DIR) -> Path:
    """A manifest path from a path, or a bare name looked up in the registry directory.

    Raises:
        InvalidLaunch: neither a file nor a registry name.
    """
    path = Path(ref)
    if path.is_file():
        return path
    if path.suffix == "" and path.name == ref:
        candidate = registry_dir / f"{ref}.toml"
        if candidate.is_file():
            return candidate
    raise InvalidLaunch(f"{ref}: no such manifest file or registry name")


def read_manifest(path: Path) -> tuple[RegistryAgent, dict[str, str]]:
    """The parsed ``coral-agent.toml`` and its ``[runtimes.executable] env`` table.

    Raises:
        InvalidLaunch: the file is unreadable or not a valid edition 3/4 manifest.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidLaunch(f"{path}: {exc}") from None
    try:
        agent = parse_manifest(data, path)
    except CoralError as exc:
        raise InvalidLaunch(f"{path}: {exc.detail}") from None
    executable = data.get("runtimes", {}).get("executable", {})
    env = executable.get("env", {}) if isinstance(executable, Mapping) else {}
    if not isinstance(env, Mapping) or not all(isinstance(v, str) for v in env.values()):
        raise InvalidLaunch(f"{path}: runtimes.executable.env: a table of strings")
    return agent, {str(k): v for k, v in env.items()}


def option_env_var(name: str) -> str:
    """The environment variable that carries option ``name`` (``CORAL_OPTION_<NAME>``)."""
    return "CORAL_OPTION_" + name.upper().replace("-", "_")


def option_value_env(name: str, kind: str, value: Any) -> str:
    """An option value (from JSON or the manifest) as its environment string.

    Raises:
        InvalidLaunch: the value does not have the option's type.
    """
    problem = f"options.{name}: expected {kind}, got {value!r}"
    if kind.startswith("list["):
        if not isinstance(value, list):
            raise InvalidLaunch(problem)
        return ",".join(option_value_env(name, kind[5:-1], item) for item in value)
    if kind in ("string", "blob"):
        if not isinstance(value, str):
            raise InvalidLaunch(problem)
        return value
    if kind == "bool":
        if isinstance(value, str) and value.lower() in _BOOLS:
            value = _BOOLS[value.lower()]
        if not isinstance(value, bool):
            raise InvalidLaunch(problem)
        return "true" if value else "false"
    if isinstance(value, bool):
        raise InvalidLaunch(problem)
    try:
        return str(float(value) if kind in ("f32", "f64") else int(value))
    except (TypeError, ValueError):
        raise InvalidLaunch(problem) from None


def options_env(agent: RegistryAgent, overrides: Mapping[str, Any]) -> dict[str, str]:
    """``CORAL_OPTION_*`` for every option with a value: the override, else the default.

    Raises:
        InvalidLaunch: an undeclared, missing required or mistyped option.
    """
    unknown = sorted(set(overrides) - set(agent.options))
    if unknown:
        raise InvalidLaunch(f"options.{unknown[0]}: not declared in the manifest")
    env: dict[str, str] = {}
    for name, spec in agent.options.items():
        value = overrides.get(name, spec.default)
        if value is None:
            if spec.required:
                raise InvalidLaunch(
                    f"options.{name}: required (set it in the manifest or the launch request)"
                )
            continue
        env[option_env_var(name)] = option_value_env(name, spec.type, value)
    return env


def runtime_argv(agent: RegistryAgent) -> tuple[str, ...]:
    """The command line of the executable runtime (this interpreter for ``python -m``).

    Raises:
        InvalidLaunch: the manifest has no executable runtime.
    """
    runtime = agent.executable
    if runtime is None:
        raise InvalidLaunch("runtimes.executable: missing; nothing to launch")
    arguments = runtime.arguments
    if runtime.path in _PYTHONS and len(arguments) >= 2 and arguments[0] == "-m":
        return (sys.executable, *arguments)
    return (runtime.path, *arguments)
