"""``coral-node doctor``: checks an operator can run before (or while) a node runs.

Each check returns a ``Check`` saying what it looked at, whether it is fine,
and how to fix it when it is not. ``fail`` means the node will not start (or
not work) as configured; ``warn`` means something optional is missing or not
yet created. Doctor starts nothing: it imports what each subsystem imports,
binds nothing but a probe socket, and writes only a scratch file.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import importlib
import importlib.util
import inspect
import json
import os
import socket
import stat
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from coral.cli.client import NodeCallError, NodeClient, tls_verify
from coral.config import Config, ConfigError, load_config
from coral.node import preflight
from coral.protocol.errors import StorageUnavailable
from coral.store.health import postgres_server_version, probe_sqlite

Status = Literal["ok", "warn", "fail"]
MIN_PYTHON = (3, 11)

#: Optional extras: import name -> (what it enables, how to install it).
OPTIONAL_DEPENDENCIES = {
    "torch": ("model agents (TRM, AgentFlow, OpenTSLM)", "pip install 'coral-node[models]'"),
    "ray": ("Ray Serve replicas for model agents", "pip install 'coral-node[ray]'"),
    "asyncpg": ("the PostgreSQL stores", "pip install 'coral-node[postgres]'"),
}

#: Modules a subsystem imports only when its configuration asks for them.
CONFIG_OPTIONAL_MODULES = {"asyncpg", "coral.store.ledger_postgres"}


def config_optional(module: str) -> bool:
    """True for modules only a PostgreSQL ``database_url`` imports (asyncpg, the PG stores)."""
    return module in CONFIG_OPTIONAL_MODULES or (
        module.startswith("coral.store.") and module.endswith("_postgres")
    )


@dataclass(frozen=True, slots=True)
class Check:
    """One finding: its name, status, what was seen, and the fix when not ok."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        """Plain dict for ``--json`` output."""
        return asdict(self)


def check_python(version: tuple[int, int] | None = None) -> Check:
    """The interpreter is new enough."""
    major, minor = version or sys.version_info[:2]
    found = f"Python {major}.{minor}"
    if (major, minor) >= MIN_PYTHON:
        return Check("python", "ok", found)
    return Check("python", "fail", found, "install Python 3.11 or newer")


def check_data_dir(data_dir: Path) -> Check:
    """The data dir exists and is writable (or can be created)."""
    if data_dir.exists():
        if not data_dir.is_dir():
            return Check(
                "data dir", "fail", f"{data_dir} is not a directory", "pick another --data-dir"
            )
        try:
            with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".doctor-"):
                pass
        except OSError as exc:
            return Check(
                "data dir",
                "fail",
                f"{data_dir} is not writable ({exc.strerror})",
                "chown the directory to this user or pick another --data-dir",
            )
        return Check("data dir", "ok", f"{data_dir} is writable")
    parent = next((p for p in data_dir.parents if p.exists()), None)
    if parent is not None and os.access(parent, os.W_OK):
        return Check(
            "data dir",
            "warn",
            f"{data_dir} does not exist yet",
            "run `coral-node init` to create it",
        )
    return Check("data dir", "fail", f"cannot create {data_dir}", "pick a writable --data-dir")


def check_key_files(keys_dir: Path) -> list[Check]:
    """The node key and admin token exist and only their owner can read them."""
    checks = []
    for name in ("node.key", "admin.token"):
        path = keys_dir / name
        label = f"key file {name}"
        if not path.exists():
            checks.append(Check(label, "warn", f"{path} not created yet", "run `coral-node init`"))
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            checks.append(
                Check(
                    label,
                    "fail",
                    f"{path} has mode {mode:04o}; others can read it",
                    f"chmod 600 {path}",
                )
            )
        else:
            checks.append(Check(label, "ok", f"mode {mode:04o}"))
    return checks


def running_node(cfg: Config) -> dict[str, object] | None:
    """The runtime file of a node started from this data dir, if its process lives."""
    try:
        info = json.loads(cfg.runtime_file.read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dict(info)


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def check_ports_or_health(cfg: Config, fetch: Callable[[str], object] | None = None) -> list[Check]:
    """A running node answers /healthz; otherwise the configured ports are free to bind.

    ``fetch(base_url)`` probes ``/healthz`` (default: the CLI's node client),
    raising NodeCallError when it fails.
    """
    info = running_node(cfg)
    if info is not None:
        base = str(info.get("http_address"))
        url = f"{base}/healthz"
        try:
            (fetch or functools.partial(_probe_health, cfg=cfg))(base)
        except NodeCallError as exc:
            return [
                Check(
                    "node",
                    "fail",
                    f"pid {info.get('pid')} runs but {url} fails: {exc}",
                    "look at the node's log; restart it with `coral-node start`",
                )
            ]
        return [Check("node", "ok", f"running (pid {info.get('pid')}) and healthy at {url}")]
    checks = []
    for label, port in (("gRPC port", cfg.grpc_port), ("HTTP port", cfg.http_port)):
        if port == 0:
            checks.append(Check(label, "ok", "0: any free port is chosen at start"))
        elif _port_free(cfg.host, port):
            checks.append(Check(label, "ok", f"{cfg.host}:{port} is free"))
        else:
            checks.append(
                Check(
                    label,
                    "fail",
                    f"{cfg.host}:{port} is in use by another process",
                    f"stop that process or set {label.split()[0].lower()}_port in config.toml",
                )
            )
    return checks


def _probe_health(base_url: str, cfg: Config) -> object:
    with NodeClient(base_url, timeout_s=5.0, verify=tls_verify(cfg)) as node:
        return node.get("/healthz")


def check_sqlite(db_path: Path) -> Check:
    """The database (or a scratch file next to it) runs in WAL mode and passes a quick check."""
    target = db_path if db_path.exists() else None
    try:
        if target is None:
            if not db_path.parent.exists():
                return Check("sqlite", "warn", "no database yet", "run `coral-node start` once")
            with tempfile.TemporaryDirectory(dir=db_path.parent) as scratch:
                return _sqlite_probe(Path(scratch) / "probe.db", "scratch database")
        return _sqlite_probe(target, str(target))
    except StorageUnavailable as exc:
        return Check("sqlite", "fail", f"{db_path}: {exc}", "restore the file from a backup")


def _sqlite_probe(path: Path, label: str) -> Check:
    health = probe_sqlite(path)
    mode, verdict = health.journal_mode, health.quick_check
    detail = f"{label}: journal_mode={mode}, quick_check={verdict}, SQLite {health.sqlite_version}"
    if mode != "wal":
        return Check("sqlite", "fail", detail, "put the data dir on a local filesystem (not NFS)")
    if verdict != "ok":
        return Check("sqlite", "fail", detail, "restore the database from a backup")
    return Check("sqlite", "ok", detail)


def check_optional_dependencies() -> list[Check]:
    """Which optional extras are installed (missing ones only disable their feature)."""
    checks = []
    for module, (enables, fix) in OPTIONAL_DEPENDENCIES.items():
        if importlib.util.find_spec(module) is not None:
            checks.append(Check(f"optional {module}", "ok", f"installed: {enables}"))
        else:
            checks.append(
                Check(f"optional {module}", "warn", f"not installed: {enables} unavailable", fix)
            )
    return checks


def check_postgres(database_url: str, timeout_s: float = 5.0) -> Check:
    """When ``database_url`` names PostgreSQL (the stores, or only the ledger), it answers."""
    if not database_url.startswith(("postgres://", "postgresql://")):
        return Check("postgresql", "ok", "not configured (every store in SQLite)")
    if importlib.util.find_spec("asyncpg") is None:
        return Check(
            "postgresql",
            "fail",
            "database_url is PostgreSQL but asyncpg is missing",
            "pip install 'coral-node[postgres]'",
        )

    try:
        version = asyncio.run(
            asyncio.wait_for(postgres_server_version(database_url, timeout_s), timeout_s + 1)
        )
    except Exception as exc:
        return Check(
            "postgresql",
            "fail",
            f"cannot connect: {exc}",
            "check database_url, that the server runs, and its pg_hba.conf",
        )
    return Check("postgresql", "ok", f"reachable, server {version}")


def check_tls(cfg: Config) -> Check | None:
    """When TLS is configured, both PEM files exist and load as a certificate and its key."""
    try:
        context = preflight.tls_context(cfg)
    except preflight.StartError as exc:
        return Check("tls", "fail", exc.cause, exc.fix)
    if context is None:
        return None
    return Check("tls", "ok", f"certificate {cfg.tls_cert_file}")


def _imported_modules(module_name: str) -> list[str]:
    """Every absolute module a module's source imports, at top level or inside functions."""
    module = importlib.import_module(module_name)
    tree = ast.parse(inspect.getsource(module))
    names: list[str] = [module_name]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            # ``from coral.api.a2a import cards`` may name a submodule: import it too.
            names += [
                f"{node.module}.{alias.name}"
                for alias in node.names
                if _is_submodule(node.module, alias.name)
            ]
    return list(dict.fromkeys(names))


def _is_submodule(package: str, name: str) -> bool:
    try:
        return importlib.util.find_spec(f"{package}.{name}") is not None
    except (ImportError, ValueError):
        return False


def check_subsystem_imports(cfg: Config | None = None) -> list[Check]:
    """Import what each subsystem (and the node core) imports, as ``coral-node start`` would.

    A module that fails to import means the node cannot start: the check fails
    naming the module. Modules only a configuration asks for (the PostgreSQL
    stores) fail only when that configuration is set.
    """
    needs_postgres = cfg is not None and cfg.database_url.startswith(
        ("postgres://", "postgresql://")
    )
    try:
        from coral.config import Config, ConfigError
        from coral.node.subsystems import build_subsystems

        owners = {"node core": "coral.node"}
        # An invalid configuration is its own failed check; the imports are still worth checking.
        try:
            subsystems = build_subsystems(cfg if cfg is not None else Config())
        except ConfigError as exc:
            return [Check("subsystems", "fail", str(exc), "fix the configuration named above")]
        owners.update({s.name: type(s).__module__ for s in subsystems})
    except ImportError as exc:
        return [_import_failure("subsystems", "coral.node.subsystems", exc)]
    checks = []
    for name, module_name in owners.items():
        try:
            modules = _imported_modules(module_name)
        except ImportError as exc:
            checks.append(_import_failure(name, module_name, exc))
            continue
        failure = None
        for module in modules:
            if config_optional(module) and not needs_postgres:
                continue
            try:
                importlib.import_module(module)
            except ImportError as exc:
                failure = _import_failure(name, module, exc)
                break
        checks.append(failure or Check(f"subsystem {name}", "ok", f"{len(modules)} modules import"))
    return checks


def _import_failure(name: str, module: str, exc: ImportError) -> Check:
    missing = exc.name or module
    extra = {"asyncpg": "postgres"}.get(missing.split(".")[0])
    fix = f"pip install 'coral-node[{extra}]'" if extra else "reinstall: pip install -e ."
    return Check(f"subsystem {name}", "fail", f"cannot import {module}: {exc}", fix)


def run_checks(config_path: Path | None, overrides: dict[str, object]) -> list[Check]:
    """Every check, in order; a config that does not load is itself a failed check."""
    checks = [check_python()]
    try:
        cfg = load_config(config_path, overrides=overrides)
    except ConfigError as exc:
        checks.append(Check("config", "fail", str(exc), "fix the named key in config.toml"))
        checks += check_subsystem_imports()
        checks += check_optional_dependencies()
        return checks
    source = config_path or os.environ.get("CORAL_CONFIG") or cfg.data_dir / "config.toml"
    checks.append(
        Check("config", "ok", f"valid ({source if Path(source).exists() else 'defaults'})")
    )
    checks.append(check_data_dir(cfg.data_dir))
    checks += check_key_files(cfg.keys_dir)
    checks += check_ports_or_health(cfg)
    checks.append(check_sqlite(cfg.db_path))
    tls = check_tls(cfg)
    if tls is not None:
        checks.append(tls)
    checks.append(check_postgres(cfg.database_url))
    checks += check_subsystem_imports(cfg)
    checks += check_optional_dependencies()
    return checks
