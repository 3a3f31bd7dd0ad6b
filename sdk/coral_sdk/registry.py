"""Registry manifests: the TOML files under ``registry/`` that describe runnable agents.

The shipped manifests are coral-server ``coral-agent.toml`` edition 4 files, so
one format serves ``coral-agent serve``, the node's launcher, the node's
coral-server registry and coral-server itself::

    edition = 4

    [agent]
    name = "trm"
    version = "0.1.0"
    description = "..."
    keywords = ["puzzle.sudoku4"]          # the Coral capabilities (edition >= 3)

    [runtimes.executable]
    path = "python3"                       # python + ["-m", module] runs a module
    arguments = ["-m", "coral_sdk.agents.trm_agent"]
    env = { OMP_NUM_THREADS = "1" }        # ours; coral-server ignores unknown keys

    [options]
    checkpoint = { type = "string", default = "", display.description = "..." }
    max_batch_size = { type = "i64", default = 64 }

coral-server's option types map onto the SDK's (``i8``..``u64`` -> int,
``f32``/``f64`` -> float, ``blob`` -> string). Edition 1 files (below) are still read::

    edition = 1

    [agent]                      # what the node's directory will show
    name = "trm"
    version = "0.1.0"
    description = "..."
    capabilities = ["puzzle.sudoku4"]

    [runtimes.executable]        # how to start it (the node's launcher uses this)
    module = "coral_sdk.agents.trm_agent"   # or command = ["program", "arg"]
    env = { OMP_NUM_THREADS = "1" }

    [options.checkpoint]         # typed options with defaults
    type = "path"
    default = ""
    description = "checkpoint directory ('' = the shipped one)"

    [[marketplace.prices]]       # the price list registered with the manifest
    capability = "puzzle.sudoku4"
    amount = 2

Option values come from explicit overrides, then ``CORAL_OPTION_<NAME>``
environment variables (how the launcher passes them), then, for an agent that
coral-server or a node session launched (``CORAL_RUNTIME_ID`` is set), the
variable named exactly like the option, then defaults.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from coral.protocol.agent import AgentManifest, AgentName, Capability, Price

#: Where the repository's registry lives, for resolving manifests by bare name.
REGISTRY_DIR = Path(__file__).resolve().parents[2] / "registry"

OptionType = Literal["string", "int", "float", "bool", "path", "secret"]
_CORAL_TYPES: dict[str, str] = {
    **{t: "int" for t in ("i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64")},
    "f32": "float",
    "f64": "float",
    "blob": "string",
}
_PYTHONS = ("python", "python3")
OptionValue = str | int | float | bool

_STRICT = ConfigDict(extra="forbid", frozen=True)


class ManifestError(ValueError):
    """A registry manifest is unreadable or invalid; the message names the bad key."""


class AgentSection(BaseModel):
    """``[agent]``: the identity part of the manifest."""

    model_config = _STRICT
    name: AgentName
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")] = "0.1.0"
    description: Annotated[str, Field(max_length=4096)] = ""
    capabilities: tuple[Capability, ...] = ()
    summary: Annotated[str, Field(max_length=256)] = ""
    readme: Annotated[str, Field(max_length=4096)] = ""
    keywords: tuple[str, ...] = ()
    license: dict[str, str] | str | None = None
    links: dict[str, str] = Field(default_factory=dict)
    #: coral-server's own capability flags (``resources``, ``tool_refreshing``), edition >= 3.
    mcp_capabilities: tuple[str, ...] = ()


class ExecutableRuntime(BaseModel):
    """``[runtimes.executable]``: a Python module (run with ``python -m``) or a command."""

    model_config = _STRICT
    module: str | None = None
    command: tuple[str, ...] = ()
    arguments: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    #: coral-server's form: a program (``python3`` + ``-m module`` runs a module) and its transport.
    path: str | None = None
    transport: Literal["sse", "streamable_http"] = "streamable_http"

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("path") is None:
            return data
        data = dict(data)
        arguments = list(data.get("arguments", []))
        if data["path"] in _PYTHONS and len(arguments) >= 2 and arguments[0] == "-m":
            data["module"], data["arguments"] = arguments[1], tuple(arguments[2:])
        else:
            data["command"] = (data["path"],)
        return data

    @model_validator(mode="after")
    def _one_entry_point(self) -> ExecutableRuntime:
        if (self.module is None) == (not self.command):
            raise ValueError("give exactly one of 'module' or 'command'")
        return self

    def argv(self) -> list[str]:
        """The command line that starts this agent (current interpreter for a module)."""
        if self.module is not None:
            return [sys.executable, "-m", self.module, *self.arguments]
        return [*self.command, *self.arguments]


class Runtimes(BaseModel):
    """``[runtimes]``: how the agent can be started; only ``executable`` so far."""

    model_config = _STRICT
    executable: ExecutableRuntime | None = None
    #: coral-server's docker runtime (image, command, transport); not run by the SDK.
    docker: dict[str, Any] | None = None


class OptionSpec(BaseModel):
    """One typed option: ``type``, ``default``, ``required``, ``description``."""

    model_config = _STRICT
    type: OptionType = "string"
    default: OptionValue | None = None
    required: bool = False
    description: str = ""
    #: coral-server's keys: how the value reaches the agent and how to show it.
    transport: Literal["env", "fs"] = "env"
    display: dict[str, Any] = Field(default_factory=dict)
    secret: bool = False
    base64: bool = False

    @model_validator(mode="before")
    @classmethod
    def _coral_types(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        kind = data.get("type")
        if isinstance(kind, str) and kind in _CORAL_TYPES:
            data["type"] = _CORAL_TYPES[kind]
        display = data.get("display")
        if not data.get("description") and isinstance(display, dict):
            data["description"] = str(display.get("description", ""))
        return data

    @model_validator(mode="after")
    def _default_has_type(self) -> OptionSpec:
        if self.default is not None:
            coerce_option(self.type, self.default)
        return self


class Marketplace(BaseModel):
    """``[marketplace]``: the agent's price list."""

    model_config = _STRICT
    prices: tuple[Price, ...] = ()
    #: coral-server's marketplace sections, kept as given.
    pricing: dict[str, Any] | None = None
    identities: dict[str, Any] | None = None


class ServeSection(BaseModel):
    """``[serve]``: defaults for ``coral-agent serve`` (flags and env override them)."""

    model_config = _STRICT
    node_url: str | None = None
    key_file: str | None = None
    replicas: Annotated[int, Field(ge=1, le=64)] = 1
    #: Mentions handled at once (None: the agent class's own default).
    concurrency: Annotated[int, Field(ge=1, le=1024)] | None = None
    metrics_port: Annotated[int, Field(ge=0, le=65535)] | None = None


class RegistryManifest(BaseModel):
    """A whole registry TOML file, validated."""

    model_config = _STRICT
    edition: Literal[1, 3, 4] = 1
    agent: AgentSection
    runtimes: Runtimes = Field(default_factory=Runtimes)
    options: dict[str, OptionSpec] = Field(default_factory=dict)
    marketplace: Marketplace = Field(default_factory=Marketplace)
    serve: ServeSection = Field(default_factory=ServeSection)

    @model_validator(mode="before")
    @classmethod
    def _coral_edition(cls, data: Any) -> Any:
        # From edition 3, [agent] capabilities are coral-server's flags; ours are keywords.
        if not isinstance(data, dict) or data.get("edition", 1) < 3:
            return data
        agent = data.get("agent")
        if not isinstance(agent, dict):
            return data
        agent = dict(agent)
        agent["mcp_capabilities"] = agent.pop("capabilities", ())
        agent["capabilities"] = agent.get("keywords", ())
        return {**data, "agent": agent}

    def agent_manifest(self) -> AgentManifest:
        """The manifest the agent registers with its node (name, capabilities, prices)."""
        return AgentManifest(
            name=self.agent.name,
            version=self.agent.version,
            description=self.agent.description,
            capabilities=self.agent.capabilities,
            prices=self.marketplace.prices,
        )

    def resolve_options(
        self, overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> dict[str, OptionValue]:
        """Typed option values: overrides, then ``CORAL_OPTION_<NAME>`` env, then defaults.

        Raises ManifestError naming an unknown, missing or mistyped option.
        """
        overrides = dict(overrides or {})
        env = os.environ if env is None else env
        unknown = sorted(set(overrides) - set(self.options))
        if unknown:
            raise ManifestError(f"options.{unknown[0]}: not declared in the manifest")
        values: dict[str, OptionValue] = {}
        launched = "CORAL_RUNTIME_ID" in env  # by coral-server or a node session
        for name, spec in self.options.items():
            fallback = env.get(name, spec.default) if launched else spec.default
            raw: Any = overrides.get(name, env.get(option_env_var(name), fallback))
            if raw is None:
                if spec.required:
                    raise ManifestError(
                        f"options.{name}: required (set it in the manifest, an override, "
                        f"or {option_env_var(name)})"
                    )
                continue
            try:
                values[name] = coerce_option(spec.type, raw)
            except ValueError as exc:
                raise ManifestError(f"options.{name}: {exc}") from None
        return values


def option_env_var(name: str) -> str:
    """The environment variable that carries option ``name`` (``CORAL_OPTION_<NAME>``)."""
    return "CORAL_OPTION_" + name.upper().replace("-", "_")


def coerce_option(kind: OptionType, value: Any) -> OptionValue:
    """Convert a TOML or env value to the option's type; ValueError says why it cannot."""
    if kind in ("string", "path", "secret"):
        if not isinstance(value, str):
            raise ValueError(f"expected a {kind} string, got {value!r}")
        return value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
            return value.lower() in ("1", "true", "yes")
        raise ValueError(f"expected a bool, got {value!r}")
    if isinstance(value, bool):
        raise ValueError(f"expected {kind}, got a bool")
    try:
        return int(value) if kind == "int" else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected {kind}, got {value!r}") from None


def parse_manifest(data: Mapping[str, Any], source: str = "manifest") -> RegistryManifest:
    """Validate parsed TOML; ManifestError names the first bad key (``options.x.type: ...``)."""
    try:
        return RegistryManifest.model_validate(dict(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "manifest"
        message = first["msg"].removeprefix("Value error, ")
        raise ManifestError(f"{source}: {where}: {message}") from None


def find_manifest(ref: str | os.PathLike[str], registry_dir: Path | None = None) -> Path:
    """A manifest path from a path, or a bare name looked up in the registry directory."""
    path = Path(ref)
    if path.is_file():
        return path
    if path.suffix == "" and path.name == str(ref):
        candidate = (registry_dir or REGISTRY_DIR) / f"{ref}.toml"
        if candidate.is_file():
            return candidate
    raise ManifestError(f"{ref}: no such manifest file or registry name")


def load_manifest(
    ref: str | os.PathLike[str], registry_dir: Path | None = None
) -> RegistryManifest:
    """Read and validate a manifest file (or registry name); ManifestError on any problem."""
    path = find_manifest(ref, registry_dir)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ManifestError(f"{path}: {exc}") from None
    return parse_manifest(data, str(path))


def list_manifests(registry_dir: Path | None = None) -> dict[str, Path]:
    """Every ``*.toml`` in the registry directory, by file stem."""
    directory = registry_dir or REGISTRY_DIR
    return {path.stem: path for path in sorted(directory.glob("*.toml"))}
