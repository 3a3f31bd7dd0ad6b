"""``coral-agent.toml`` editions 3 and 4, as coral-server 1.2 reads them.

Only what a node needs is kept (agent info, options, the executable and docker
runtimes); unknown keys and sections (prototype runtimes, LLM proxies,
marketplace) are tolerated and ignored, as coral-server tolerates them.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from coral.protocol.errors import InvalidMessage
from coral.sessions.options import InvalidOption, OptionSpec, parse_option

MIN_EDITION = 3
MAX_EDITION = 4
NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9]*(-[a-z0-9]+)*)?$")
SEMVER = re.compile(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)*$")

McpTransport = Literal["sse", "streamable_http"]
TRANSPORTS: tuple[McpTransport, ...] = ("sse", "streamable_http")
DEFAULT_TRANSPORT: McpTransport = "streamable_http"


class InvalidManifest(InvalidMessage):
    """A ``coral-agent.toml`` that cannot be used (the detail says why)."""

    reason = "invalid_manifest"


@dataclass(frozen=True)
class ExecutableRuntime:
    """``[runtimes.executable]``: a program started with ``arguments``."""

    path: str
    arguments: tuple[str, ...] = ()
    transport: McpTransport = DEFAULT_TRANSPORT


@dataclass(frozen=True)
class DockerRuntime:
    """``[runtimes.docker]``: an image run with ``command``."""

    image: str
    command: tuple[str, ...] = ()
    transport: McpTransport = DEFAULT_TRANSPORT


@dataclass(frozen=True)
class RegistryAgent:
    """One agent of the registry: what it is, its options and how to run it."""

    edition: int
    name: str
    version: str
    description: str = ""
    summary: str = ""
    readme: str = ""
    license: Mapping[str, str] = field(default_factory=dict)
    keywords: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    options: Mapping[str, OptionSpec] = field(default_factory=dict)
    executable: ExecutableRuntime | None = None
    docker: DockerRuntime | None = None
    #: The folder holding the toml: executables run there and relative paths resolve there.
    path: Path | None = None

    @property
    def runtimes(self) -> list[str]:
        """Runtime ids this agent offers (``executable``, ``docker``)."""
        return [n for n, r in (("executable", self.executable), ("docker", self.docker)) if r]

    def to_json(self) -> dict[str, Any]:
        """The agent as ``GET /api/v1/registry/local/{name}/{version}`` shows it."""
        return {
            "edition": self.edition,
            "info": {
                "identifier": {
                    "name": self.name,
                    "version": self.version,
                    "registrySourceId": {"type": "local"},
                },
                "description": self.description,
                "summary": self.summary,
                "readme": self.readme,
                "license": dict(self.license),
                "keywords": list(self.keywords),
                "capabilities": list(self.capabilities),
            },
            "runtimes": self.runtimes,
            "options": {name: o.to_json() for name, o in self.options.items()},
        }


def _str(section: Mapping[str, Any], key: str, limit: int, *, required: bool = False) -> str:
    value = section.get(key, "")
    if not isinstance(value, str) or len(value) > limit or (required and not value):
        need = "a non-empty string" if required else "a string"
        raise InvalidManifest(f"[agent] {key} must be {need} of at most {limit} characters")
    return value


def _transport(section: Mapping[str, Any], where: str) -> McpTransport:
    value = section.get("transport", DEFAULT_TRANSPORT)
    if value not in TRANSPORTS:
        raise InvalidManifest(f"{where} transport is sse or streamable_http, not {value!r}")
    return value  # type: ignore[no-any-return]


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidManifest(f"{where} must be a list of strings")
    return tuple(value)


def _runtimes(data: Mapping[str, Any]) -> tuple[ExecutableRuntime | None, DockerRuntime | None]:
    runtimes = data.get("runtimes", {})
    if not isinstance(runtimes, Mapping):
        raise InvalidManifest("[runtimes] must be a table")
    executable = docker = None
    if isinstance(exe := runtimes.get("executable"), Mapping):
        path = exe.get("path")
        if not isinstance(path, str) or not path:
            raise InvalidManifest("[runtimes.executable] needs a path")
        arguments = _strings(exe.get("arguments", []), "[runtimes.executable] arguments")
        executable = ExecutableRuntime(path, arguments, _transport(exe, "[runtimes.executable]"))
    if isinstance(dock := runtimes.get("docker"), Mapping):
        image = dock.get("image")
        if not isinstance(image, str) or not image:
            raise InvalidManifest("[runtimes.docker] needs an image")
        command = _strings(dock.get("command", []), "[runtimes.docker] command")
        docker = DockerRuntime(image, command, _transport(dock, "[runtimes.docker]"))
    return executable, docker


def _license(agent: Mapping[str, Any]) -> dict[str, str]:
    raw = agent.get("license", {})
    if isinstance(raw, str):
        return {"type": "spdx", "expression": raw}
    if not isinstance(raw, Mapping):
        raise InvalidManifest("[agent.license] must be a table")
    return {str(k): str(v) for k, v in raw.items()}


def parse_manifest(data: Mapping[str, Any], path: Path | None = None) -> RegistryAgent:
    """A registry agent from parsed TOML; InvalidManifest says what is wrong."""
    edition = data.get("edition")
    if not isinstance(edition, int) or not MIN_EDITION <= edition <= MAX_EDITION:
        raise InvalidManifest(
            f"edition must be {MIN_EDITION}..{MAX_EDITION} (got {edition!r});"
            " editions 1 and 2 are not supported, as in coral-server 1.2"
        )
    agent = data.get("agent")
    if not isinstance(agent, Mapping):
        raise InvalidManifest("an [agent] table is required")
    name = _str(agent, "name", 32, required=True)
    if not NAME_PATTERN.match(name):
        raise InvalidManifest(f"[agent] name {name!r} must match {NAME_PATTERN.pattern}")
    version = _str(agent, "version", 32, required=True)
    if not SEMVER.match(version):
        raise InvalidManifest(f"[agent] version {version!r} is not a semantic version")
    raw_options = data.get("options", {})
    if not isinstance(raw_options, Mapping) or len(raw_options) > 512:
        raise InvalidManifest("[options] must be a table of at most 512 options")
    try:
        options = {str(k): parse_option(str(k), v, edition) for k, v in raw_options.items()}
    except InvalidOption as exc:
        raise InvalidManifest(exc.detail) from None
    executable, docker = _runtimes(data)
    if executable is None and docker is None and not data.get("runtimes"):
        raise InvalidManifest("at least one runtime is required")
    return RegistryAgent(
        edition=edition,
        name=name,
        version=version,
        description=_str(agent, "description", 1024),
        summary=_str(agent, "summary", 256),
        readme=_str(agent, "readme", 4096),
        license=_license(agent),
        keywords=_strings(agent.get("keywords", []), "[agent] keywords"),
        capabilities=_strings(agent.get("capabilities", []), "[agent] capabilities"),
        options=options,
        executable=executable,
        docker=docker,
        path=path.parent if path is not None else None,
    )


def load_manifest(path: Path) -> RegistryAgent:
    """Read and parse one ``coral-agent.toml``; InvalidManifest on any problem."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidManifest(f"{path}: cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidManifest(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse_manifest(data, path.resolve())
    except InvalidManifest as exc:
        raise InvalidManifest(f"{path}: {exc.detail}") from None
