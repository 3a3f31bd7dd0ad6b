"""One typed configuration: defaults, then a TOML file, then CORAL_* environment, then flags.

Later sources win; pydantic-settings does the layering. Every field has a
sane default so ``coral-node start`` works with no file at all: SQLite and
keys live in the platform's data dir, and both servers bind to 127.0.0.1.

Nested tables are reachable from the environment with ``__``:
``CORAL_LIMITS__MAX_MESSAGE_BYTES=1048576``, ``CORAL_A2A__PUSH_ALLOW='["10.0.0.0/8"]'``.
``Config(...)`` itself takes only the values it is given; ``load_config``
adds the file and the environment.
"""

from __future__ import annotations

import os
import textwrap
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from coral.protocol.limits import Limits

ENV_PREFIX = "CORAL_"
#: Separates a table from its key in environment names: ``CORAL_LIMITS__MAX_PARTS``.
ENV_NESTED_DELIMITER = "__"
#: Names the config file when ``--config`` does not.
CONFIG_ENV = "CORAL_CONFIG"


#: The sources ``load_config`` puts under the flags, below ``Config``'s own arguments.
_LAYERS: ContextVar[tuple[PydanticBaseSettingsSource, ...]] = ContextVar(
    "coral_config_layers", default=()
)


class ConfigError(Exception):
    """The configuration is unreadable or invalid; the message says which key."""


def default_data_dir() -> Path:
    """The per-user data directory for this platform (XDG on Linux)."""
    return Path(platformdirs.user_data_dir("coral-node", appauthor=False))


def _comma_list(value: Any) -> Any:
    """``"a:1, b:2"`` (how the environment spells a list) becomes ``["a:1", "b:2"]``."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class LimitsConfig(BaseModel):
    """Protocol limits an operator may tune (see coral.protocol.limits)."""

    model_config = ConfigDict(extra="forbid")
    max_message_bytes: int = Field(
        default=256 * 1024, ge=1024, le=64 * 1024 * 1024, description="Largest encoded message."
    )
    max_parts: int = Field(default=64, ge=1, le=4096, description="Most parts in one message.")
    max_depth: int = Field(default=32, ge=4, le=256, description="Deepest JSON nesting in a part.")
    max_number_chars: int = Field(
        default=100,
        ge=20,
        le=4300,
        description="Longest JSON number literal accepted (ledger amounts need 19 digits).",
    )
    max_future_skew_ms: int = Field(
        default=300_000, ge=0, description="Accepted clock skew into the future (ms)."
    )
    max_age_ms: int = Field(
        default=900_000, ge=1000, description="A message older than this is refused (ms)."
    )

    def to_limits(self) -> Limits:
        """The protocol's Limits with these values (the rest keep their defaults)."""
        return Limits(
            max_message_bytes=self.max_message_bytes,
            max_parts=self.max_parts,
            max_depth=self.max_depth,
            max_number_chars=self.max_number_chars,
            max_future_skew_ms=self.max_future_skew_ms,
            max_age_ms=self.max_age_ms,
        )


class A2AConfig(BaseModel):
    """The A2A front door (docs/interop.md): task retention, default agent, push, cards."""

    model_config = ConfigDict(extra="forbid")
    default_agent: str = Field(
        default="",
        description='Agent that requests naming no agent go to; "" = the router.',
    )
    task_retention_s: float = Field(
        default=7 * 24 * 3600.0, gt=0, description="Finished tasks stay readable this long."
    )
    max_tasks: int = Field(
        default=100_000, ge=1, description="At most this many tasks are kept (oldest evicted)."
    )
    reply_timeout_s: float = Field(
        default=300.0, gt=0, description="A task whose agent sends no update this long fails."
    )
    push_allow: list[str] = Field(
        default_factory=list,
        description="Push webhooks may only target public addresses, plus these hosts or"
        ' CIDR ranges (e.g. "127.0.0.1", "10.0.0.0/8", "hooks.internal").',
    )
    push_attempts: int = Field(
        default=3, ge=1, le=10, description="Delivery attempts per notification (with back-off)."
    )
    extended_card_description: str = Field(
        default="",
        description='Extra text for the extended card (authenticated callers); "" = none.',
    )
    callers: dict[str, str] = Field(
        default_factory=dict,
        description='Callers that authenticate with "Authorization: Bearer <token>", as'
        " name = token; each sees only its own tasks. None = anonymous A2A.",
    )


class Config(BaseSettings):
    """Everything the node reads at start-up."""

    model_config = SettingsConfigDict(
        extra="forbid",
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
    )

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the database, keys and runtime files live.",
    )
    host: str = Field(
        default="127.0.0.1",
        description="Interface to bind. Keep 127.0.0.1 unless a reverse proxy or TLS sits"
        " in front.",
    )
    grpc_port: int = Field(
        default=7420,
        ge=0,
        le=65535,
        description="gRPC API (coral.v1 services, health, reflection).",
    )
    http_port: int = Field(
        default=7421, ge=0, le=65535, description="HTTP/JSON API, dashboard and /metrics."
    )
    advertise_host: str | None = Field(
        default=None,
        description="Address other nodes use to reach us; defaults to host.",
        examples=["node-a.example.org"],
    )
    database_url: str = Field(
        default="sqlite",
        description='"sqlite" keeps everything in data_dir (coral.db, ledger.db); a'
        " postgresql:// URL puts every store in that database (see database_stores), so"
        " several node processes with the same node key can serve one logical node.",
        examples=["postgresql://coral@db.example.org/coral"],
    )
    database_stores: Literal["ledger", "all"] = Field(
        default="all",
        description='With a postgresql:// database_url: "all" (the default) puts every store'
        ' there; "ledger" is an opt-out that keeps only the ledger there and the rest in'
        ' data_dir/coral.db (one process only: replicas need "all"). Ignored with "sqlite".',
    )
    database_pool_size: int = Field(
        default=10,
        ge=2,
        le=1000,
        description="Connections in the one PostgreSQL pool every store of this process"
        " shares (with a postgresql:// database_url); the process also keeps one LISTEN"
        " connection per change channel and one lease connection outside it.",
    )
    public_addresses: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description='gRPC addresses ("host:port") other nodes reach this node at, listed in its'
        " peer record: every replica's, or one load balancer's. Empty: this process's own"
        " (advertise_host or host, and grpc_port). Comma separated in the environment.",
    )
    bootstrap_peers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description='Other nodes to contact at start, as "host:grpc_port" (comma separated'
        " in the environment).",
    )
    gossip_interval_s: float = Field(
        default=1.0, gt=0, le=3600, description="Seconds between gossip rounds with peers."
    )
    log_level: str = Field(default="info", description="debug | info | warning | error")
    log_json: bool = Field(default=False, description="One JSON object per log line.")
    dev_mode: bool = Field(
        default=True,
        description="Development mode allows operator fund issuance for demos and tests.",
    )
    tls_cert_file: Path | None = Field(
        default=None,
        description="PEM certificate chain and key; when both are set, gRPC and HTTP serve"
        " TLS. Leave unset behind a TLS-terminating reverse proxy.",
        examples=["/etc/coral/node.crt"],
    )
    tls_key_file: Path | None = Field(
        default=None,
        description="PEM private key of tls_cert_file.",
        examples=["/etc/coral/node.key"],
    )
    agent_message_rate: float = Field(
        default=500.0,
        gt=0,
        description="Messages per second each agent may submit (bursts up to twice that).",
    )
    shutdown_grace_s: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="Seconds in-flight requests get to finish at shutdown.",
    )
    max_open_waits: int = Field(
        default=0,
        ge=0,
        description="Node-wide cap on open waits and streams (long-polls, SSE, gRPC waits);"
        " 0 derives it from the open-file limit, keeping headroom for health checks,"
        " admin calls and the database.",
    )
    peer_record_ttl_s: float = Field(
        default=3600.0,
        ge=1,
        le=30 * 24 * 3600,
        description="Seconds a peer record stays valid; nodes re-issue theirs every third"
        " of it and forget peers whose record expired.",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Names browsers may use for the dashboard and MCP endpoints besides"
        ' loopback, host and advertise_host (DNS-rebinding protection; "*" = off,'
        " only behind a proxy that checks them). Comma separated in the environment.",
    )
    mcp_max_wait_ms: int = Field(
        default=60_000,
        ge=1_000,
        le=60_000,
        description="Longest an MCP wait tool holds its request; MCP clients give up at 60 s.",
    )
    mcp_sse_retry_ms: int = Field(
        default=2_000,
        ge=100,
        le=60_000,
        description="retry (ms) sent in the priming event of MCP POST streams.",
    )
    coral_server_config: Path | None = Field(
        default=None,
        description="A coral-server config.toml (default: $CONFIG_FILE_PATH) for the /api/v1"
        " drop-in.",
        examples=["/etc/coral/coral-server.toml"],
    )
    coral_server_overrides: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="coral-server style --section.key=value overrides of that file"
        " (space separated in the environment).",
    )
    limits: LimitsConfig = Field(
        default_factory=LimitsConfig, description="Protocol limits (coral.protocol.limits)."
    )
    a2a: A2AConfig = Field(default_factory=A2AConfig, description="The A2A front door.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments first, then what ``load_config`` layers under them (nothing otherwise)."""
        return (init_settings, *_LAYERS.get())

    @field_validator("bootstrap_peers", "allowed_hosts", "public_addresses", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        return _comma_list(value)

    @field_validator("coral_server_overrides", mode="before")
    @classmethod
    def _split_spaces(cls, value: Any) -> Any:
        return value.split() if isinstance(value, str) else value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError("log_level is one of debug, info, warning, error")
        return value.lower()

    @property
    def stores_on_postgres(self) -> bool:
        """True when the stores live in PostgreSQL: a postgresql:// ``database_url``.

        ``database_stores = "ledger"`` opts out; then only the ledger is there.
        """
        return (
            self.database_url.startswith(("postgresql://", "postgres://"))
            and self.database_stores == "all"
        )

    @property
    def tls_enabled(self) -> bool:
        """True when both a certificate and a key file are configured."""
        return self.tls_cert_file is not None and self.tls_key_file is not None

    @property
    def db_path(self) -> Path:
        """The SQLite database file."""
        return self.data_dir / "coral.db"

    @property
    def keys_dir(self) -> Path:
        """The node key, admin token and agent keys."""
        return self.data_dir / "keys"

    @property
    def runtime_file(self) -> Path:
        """Written while the node runs: its pid and bound addresses."""
        return self.data_dir / "node.json"


class _EnvironmentSource(EnvSettingsSource):
    """CORAL_* variables read from the mapping ``load_config`` was given.

    The node passes ``os.environ``; tests pass their own. ``_load_env_vars`` is
    the one place pydantic-settings reads ``os.environ`` (pinned below 3).
    """

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._env = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Names are matched case-insensitively, as pydantic-settings does for os.environ.
        return {key.lower(): value for key, value in self._env.items()}


def _config_file(path: Path | None, env: Mapping[str, str], data_dir: Any) -> Path | None:
    """``path``, else ``$CORAL_CONFIG``, else ``<data_dir>/config.toml`` when it exists."""
    if path is None and CONFIG_ENV in env:
        path = Path(env[CONFIG_ENV])
    if path is None:
        candidate = Path(data_dir or default_data_dir()) / "config.toml"
        return candidate if candidate.exists() else None
    if not Path(path).is_file():
        raise ConfigError(f"config file not found: {path}")
    return Path(path)


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the Config from defaults, file, environment and flags (flags win).

    ``path`` defaults to ``$CORAL_CONFIG`` or ``<data_dir>/config.toml`` when
    that file exists; ``env`` to ``os.environ``. Flags whose value is None
    are not set. Raises ConfigError naming the offending key.
    """
    env = os.environ if env is None else env
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    toml_path: Path | None = None
    try:
        env_source = _EnvironmentSource(Config, env)
        toml_path = _config_file(path, env, flags.get("data_dir") or env_source().get("data_dir"))
        layers = _LAYERS.set((env_source, TomlConfigSettingsSource(Config, toml_file=toml_path)))
        try:
            return Config(**flags)
        finally:
            _LAYERS.reset(layers)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{toml_path}: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid config value for {key!r}: {first['msg']}") from None
    except SettingsError as exc:
        # An environment value that should be JSON (a table or a list) is not.
        raise ConfigError(f"invalid CORAL_* environment value: {exc}") from None


_TEMPLATE_HEADER = """\
# Coral Node configuration. Every key is optional; the values shown are the defaults.
# Precedence: this file < CORAL_* environment variables < command-line flags.
# In the environment a key is CORAL_<KEY>, a table's key CORAL_<TABLE>__<KEY>
# (e.g. CORAL_LIMITS__MAX_PARTS=128); docs/deploy.md lists them.
"""


def _comment(text: str | None) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text or "", width=86)]


def _template_lines(model: type[BaseModel], values: Mapping[str, Any], table: str) -> list[str]:
    """Comment and ``key = default`` lines for a model's scalar fields, then its tables."""
    lines: list[str] = []
    tables: list[tuple[str, FieldInfo]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            tables.append((name, field))
            continue
        value = values[name] if name in values else field.get_default(call_default_factory=True)
        if isinstance(value, dict):
            tables.append((name, field))
            continue
        lines += _comment(field.description)
        if value is None:
            example = (field.examples or [""])[0]
            lines.append(f"# {tomli_w.dumps({name: example}).strip()}")
        else:
            lines.append(
                tomli_w.dumps({name: str(value) if isinstance(value, Path) else value}).strip()
            )
        lines.append("")
    for name, field in tables:
        annotation = field.annotation
        qualified = f"{table}.{name}" if table else name
        lines += _comment(field.description)
        lines.append(f"[{qualified}]")
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines += _template_lines(annotation, {}, qualified)
        else:
            lines.append("")
    return lines


def config_template(data_dir: Path) -> str:
    """A commented config.toml showing every key at its default (``data_dir`` filled in).

    Generated from the Config model's fields, defaults and descriptions, so it
    always matches what the node accepts.
    """
    values = {"data_dir": str(data_dir).replace("\\", "/")}
    return _TEMPLATE_HEADER + "\n" + "\n".join(_template_lines(Config, values, "")).rstrip() + "\n"
