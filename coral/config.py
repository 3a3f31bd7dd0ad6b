"""One typed configuration: TOML file, then CORAL_* environment, then flags.

Later sources win. Every field has a sane default so ``coral-node start``
works with no file at all: SQLite and keys live in the platform's data dir,
and both servers bind to 127.0.0.1.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from coral.protocol.limits import Limits

ENV_PREFIX = "CORAL_"


class ConfigError(Exception):
    """The configuration is unreadable or invalid; the message says which key."""


def default_data_dir() -> Path:
    """The per-user data directory for this platform (XDG on Linux)."""
    return Path(platformdirs.user_data_dir("coral-node", appauthor=False))


class LimitsConfig(BaseModel):
    """Protocol limits an operator may tune (see coral.protocol.limits)."""

    model_config = ConfigDict(extra="forbid")
    max_message_bytes: int = Field(default=256 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_parts: int = Field(default=64, ge=1, le=4096)
    max_depth: int = Field(default=32, ge=4, le=256)
    max_future_skew_ms: int = Field(default=300_000, ge=0)
    max_age_ms: int = Field(default=900_000, ge=1000)

    def to_limits(self) -> Limits:
        return Limits(
            max_message_bytes=self.max_message_bytes,
            max_parts=self.max_parts,
            max_depth=self.max_depth,
            max_future_skew_ms=self.max_future_skew_ms,
            max_age_ms=self.max_age_ms,
        )


class A2AConfig(BaseModel):
    """The A2A front door: task retention, default agent, push notifications, cards."""

    model_config = ConfigDict(extra="forbid")
    #: Agent that requests naming no agent (no URL name, no tenant) go to; "" = the router.
    default_agent: str = ""
    #: Finished tasks stay readable this long, then are evicted.
    task_retention_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    #: At most this many tasks are kept (oldest evicted first).
    max_tasks: int = Field(default=100_000, ge=1)
    #: A task whose agent sends no update for this long fails.
    reply_timeout_s: float = Field(default=300.0, gt=0)
    #: Push-notification webhooks may only target public addresses, plus these
    #: hosts or CIDR ranges (e.g. "127.0.0.1", "10.0.0.0/8", "hooks.internal").
    push_allow: list[str] = Field(default_factory=list)
    #: Delivery attempts per notification (exponential back-off between them).
    push_attempts: int = Field(default=3, ge=1, le=10)
    #: Extra text for the extended card (authenticated callers only); "" = no extended card.
    extended_card_description: str = ""
    #: Callers that authenticate with ``Authorization: Bearer <token>``: name -> token.
    #: An authenticated caller's tasks are visible to that caller only.
    callers: dict[str, str] = Field(default_factory=dict)


class Config(BaseModel):
    """Everything the node reads at start-up."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    grpc_port: int = Field(default=7420, ge=0, le=65535)
    http_port: int = Field(default=7421, ge=0, le=65535)
    #: Address other nodes use to reach us; defaults to host:port.
    advertise_host: str | None = None
    #: "sqlite" (file in data_dir) or a postgresql:// URL for the ledger.
    database_url: str = "sqlite"
    bootstrap_peers: list[str] = Field(default_factory=list)
    #: Seconds between gossip rounds with peers.
    gossip_interval_s: float = Field(default=1.0, gt=0, le=3600)
    log_level: str = "info"
    log_json: bool = False
    dev_mode: bool = True
    #: PEM certificate chain and key; when both are set, gRPC and HTTP serve TLS.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    #: Messages per second each agent may submit (bursts up to twice that).
    agent_message_rate: float = Field(default=500.0, gt=0)
    shutdown_grace_s: float = Field(default=5.0, ge=0, le=300)
    #: Node-wide cap on open waits and streams (long-polls, SSE, gRPC waits);
    #: 0 derives it from the process's open-file limit, keeping headroom for
    #: health checks, admin calls and the database.
    max_open_waits: int = Field(default=0, ge=0)
    #: Seconds a peer record stays valid; nodes re-issue theirs every third of
    #: it, and forget peers whose record expired.
    peer_record_ttl_s: float = Field(default=3600.0, ge=1, le=30 * 24 * 3600)
    #: Extra names (or IPs) under which browsers may reach the dashboard and MCP
    #: endpoints, besides loopback, ``host`` and ``advertise_host``; "*" turns
    #: the Host/Origin checks off (only behind a proxy that checks them).
    allowed_hosts: list[str] = Field(default_factory=list)
    #: Longest an MCP wait tool holds its request; MCP clients give up at 60 s.
    mcp_max_wait_ms: int = Field(default=60_000, ge=1_000, le=60_000)
    #: ``retry`` (ms) sent in the priming event of MCP POST streams (2025-11-25 clients).
    mcp_sse_retry_ms: int = Field(default=2_000, ge=100, le=60_000)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    a2a: A2AConfig = Field(default_factory=A2AConfig)
    #: A coral-server ``config.toml`` (default: ``$CONFIG_FILE_PATH``) for the /api/v1 drop-in.
    coral_server_config: Path | None = None
    #: coral-server style ``--section.key=value`` overrides of that file.
    coral_server_overrides: list[str] = Field(default_factory=list)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError("log_level is one of debug, info, warning, error")
        return value.lower()

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_file is not None and self.tls_key_file is not None

    @property
    def db_path(self) -> Path:
        return self.data_dir / "coral.db"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def runtime_file(self) -> Path:
        """Written while the node runs: its pid and bound addresses."""
        return self.data_dir / "node.json"


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in Config.model_fields:
        if field in ("limits", "a2a"):
            continue
        key = ENV_PREFIX + field.upper()
        if key in env:
            value: Any = env[key]
            if field in ("bootstrap_peers", "allowed_hosts"):
                value = [p.strip() for p in env[key].split(",") if p.strip()]
            elif field == "coral_server_overrides":
                value = env[key].split()
            out[field] = value
    return out


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the Config from file, environment and flags (flags win).

    ``path`` defaults to ``$CORAL_CONFIG`` or ``<data_dir>/config.toml`` when
    that file exists. Raises ConfigError naming the offending key.
    """
    env = os.environ if env is None else env
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    layered: dict[str, Any] = {}
    env_values = _env_overrides(env)
    if path is None and "CORAL_CONFIG" in env:
        path = Path(env["CORAL_CONFIG"])
    if path is None:
        data_dir = flags.get("data_dir") or env_values.get("data_dir") or default_data_dir()
        candidate = Path(data_dir) / "config.toml"
        path = candidate if candidate.exists() else None
    if path is not None:
        try:
            layered.update(tomllib.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    layered.update(env_values)
    layered.update(flags)
    try:
        return Config.model_validate(layered)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid config value for {key!r}: {first['msg']}") from None


CONFIG_TEMPLATE = """\
# Coral Node configuration. Every key is optional; the values shown are the defaults.
# Precedence: this file < CORAL_* environment variables < command-line flags.

# Where the database, keys and runtime files live.
data_dir = "{data_dir}"

# Interface to bind. Keep 127.0.0.1 unless a reverse proxy or TLS sits in front.
host = "127.0.0.1"
grpc_port = 7420   # gRPC API (coral.v1 services, health, reflection)
http_port = 7421   # HTTP/JSON API, dashboard and /metrics

# "sqlite" keeps everything in data_dir/coral.db; a postgresql:// URL moves the ledger there.
database_url = "sqlite"

# Other nodes to contact at start, as "host:grpc_port".
bootstrap_peers = []

log_level = "info"   # debug | info | warning | error
log_json = false     # one JSON object per log line

# TLS for both servers: PEM files. Leave unset behind a TLS-terminating reverse proxy.
# tls_cert_file = "/etc/coral/node.crt"
# tls_key_file = "/etc/coral/node.key"

# Names browsers may use for the dashboard and MCP endpoints besides loopback,
# host and advertise_host (DNS-rebinding and cross-site protection; "*" = off).
allowed_hosts = []

# MCP: longest wait-tool call (clients time out at 60 s) and the SSE retry hint.
mcp_max_wait_ms = 60000
mcp_sse_retry_ms = 2000

# Development mode allows operator fund issuance for demos and tests.
dev_mode = true

[limits]
max_message_bytes = 262144
max_parts = 64
max_depth = 32
max_future_skew_ms = 300000
max_age_ms = 900000

# The A2A front door (docs/interop.md).
[a2a]
default_agent = ""            # agent for requests that name none; "" = the router
task_retention_s = 604800     # finished tasks stay readable this long
max_tasks = 100000            # and at most this many tasks are kept
reply_timeout_s = 300         # a task whose agent is silent this long fails
push_allow = []               # webhook hosts/addresses/CIDRs allowed besides public ones
push_attempts = 3
extended_card_description = ""  # "" = no extended card

# Callers that authenticate with "Authorization: Bearer <token>"; none = anonymous A2A.
[a2a.callers]
"""
