"""Checks a node start makes before it opens anything, and the error a failed start raises.

A start that cannot succeed should say so at once, in one line naming the
cause and the fix, rather than half-open a database and die with a traceback.
``coral-node doctor`` reuses the same checks.
"""

from __future__ import annotations

import errno
import importlib
import socket
import ssl
import tempfile
from pathlib import Path

from coral.config import Config


class StartError(Exception):
    """A node start failed for a reason the operator can fix; ``str()`` is one line."""

    def __init__(self, cause: str, fix: str) -> None:
        super().__init__(f"{cause}; {fix}")
        self.cause = cause
        self.fix = fix


def check_data_dir(data_dir: Path) -> None:
    """Create ``data_dir`` if needed and prove a file can be written in it.

    Raises:
        StartError: the path is not a directory, or cannot be created or written.
    """
    fix = "pass --data-dir with a directory this user can write (or set data_dir)"
    if data_dir.exists() and not data_dir.is_dir():
        raise StartError(f"data dir {data_dir} is not a directory", fix)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".write-probe-"):
            pass
    except (NotADirectoryError, FileExistsError):
        raise StartError(f"data dir {data_dir} is not a directory", fix) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StartError(f"data dir {data_dir} is not writable ({reason})", fix) from None


def tls_context(cfg: Config) -> ssl.SSLContext | None:
    """The server TLS context when TLS is configured, loaded now so bad files fail early.

    Raises:
        StartError: only one of the two files is set, a file is missing, or the PEM is bad.
    """
    cert, key = cfg.tls_cert_file, cfg.tls_key_file
    if cert is None and key is None:
        return None
    fix = "set tls_cert_file and tls_key_file to readable PEM files (or unset both)"
    if cert is None or key is None:
        missing = "tls_cert_file" if cert is None else "tls_key_file"
        raise StartError(f"TLS is half configured: {missing} is not set", fix)
    for label, path in (("certificate", cert), ("key", key)):
        if not path.is_file():
            raise StartError(f"TLS {label} file {path} not found", fix)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        raise StartError(
            f"cannot load TLS certificate {cert} with key {key} ({exc})", fix
        ) from None
    return context


def check_database_driver(cfg: Config) -> None:
    """A PostgreSQL ``database_url`` needs the ``postgres`` extra installed.

    Raises:
        StartError: asyncpg cannot be imported.
    """
    if not cfg.database_url.startswith(("postgres://", "postgresql://")):
        return
    try:
        importlib.import_module("asyncpg")
    except ImportError:
        raise StartError(
            "database_url is PostgreSQL but asyncpg is not installed",
            "pip install 'coral-node[postgres]'",
        ) from None


def port_in_use(host: str, port: int) -> bool:
    """Whether another socket listens on ``host:port`` (a free or unbindable port is False)."""
    if port == 0:
        return False
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def bind_error(kind: str, host: str, port: int, flag: str, exc: BaseException | None) -> StartError:
    """The StartError for a server (``kind`` "gRPC" or "HTTP") that could not bind."""
    in_use = (isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE) or port_in_use(host, port)
    if in_use:
        return StartError(
            f"{kind} port {host}:{port} is already in use",
            f"stop the process using it or pass {flag} PORT (0 picks a free port)",
        )
    detail = f" ({exc})" if exc is not None else ""
    return StartError(
        f"cannot bind {kind} to {host}:{port}{detail}",
        f"check --host and {flag} (a port below 1024 needs privileges)",
    )


def check_ports(cfg: Config) -> None:
    """Fail before opening anything when a configured port already has a listener.

    The servers' own binds still decide (a port can be taken in between); this only
    makes the common case fast.

    Raises:
        StartError: the gRPC or HTTP port is in use.
    """
    for kind, port, flag in (
        ("gRPC", cfg.grpc_port, "--grpc-port"),
        ("HTTP", cfg.http_port, "--http-port"),
    ):
        if port_in_use(cfg.host, port):
            raise bind_error(kind, cfg.host, port, flag, None)
