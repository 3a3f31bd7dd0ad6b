"""Start a private PostgreSQL server in a temporary directory, for tests and benchmarks.

It runs ``initdb`` and ``postgres`` on a free 127.0.0.1 port. PostgreSQL
refuses to run as root, so under root the server runs as the ``postgres``
(or ``nobody``) user via ``setpriv``. Nothing here downloads anything.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import BinaryIO


def find_postgres_bin() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``, or None when not installed."""
    candidates: list[str] = []
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(found).resolve().parent))
    candidates.append("/usr/local/bin")
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for directory in candidates:
        if (Path(directory) / "initdb").exists() and (Path(directory) / "postgres").exists():
            return Path(directory)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unprivileged_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged user to run PostgreSQL")


class ThrowawayPostgres:
    """A PostgreSQL server that lives as long as this object (call ``stop``)."""

    def __init__(self, *, durable: bool = False) -> None:
        bin_dir = find_postgres_bin()
        if bin_dir is None:
            raise FileNotFoundError("no PostgreSQL server binaries (initdb, postgres) found")
        self.bin_dir = bin_dir
        self.durable = durable
        self.port = _free_port()
        self.base = Path(tempfile.mkdtemp(prefix="coral-pg-"))
        self.user = _unprivileged_user()
        self._process: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    @property
    def dsn(self) -> str:
        """Connection string for the superuser ``postgres`` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def dsn_for(self, database: str) -> str:
        """Connection string for another database on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _as_user(self, argv: list[str]) -> list[str]:
        if self.user is None:
            return argv
        setpriv = shutil.which("setpriv")
        if setpriv:  # exec's directly, so signals reach postgres itself
            return [
                setpriv,
                f"--reuid={self.user.pw_uid}",
                f"--regid={self.user.pw_gid}",
                "--clear-groups",
                *argv,
            ]
        return ["runuser", "-u", self.user.pw_name, "--", *argv]

    def start(self, timeout_s: float = 30.0) -> None:
        """initdb, then start the server and wait until it accepts connections."""
        data = self.base / "data"
        if self.user is not None:
            os.chown(self.base, self.user.pw_uid, self.user.pw_gid)
        subprocess.run(
            self._as_user(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
            cwd=self.base,
        )
        settings = [
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.base}",
            "-c",
            "max_connections=50",
            "-c",
            "shared_buffers=32MB",
        ]
        if not self.durable:
            # Tests check semantics, not crash safety: skip fsync to spare shared CPUs.
            settings += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        log = self._log = open(self.base / "server.log", "wb")  # closed in stop()
        self._process = subprocess.Popen(
            self._as_user(
                [str(self.bin_dir / "postgres"), "-D", str(data), "-p", str(self.port), *settings]
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.base,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.base / 'server.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
                if b"ready to accept" in (self.base / "server.log").read_bytes():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError("postgres did not start in time")

    def stop(self) -> None:
        """Fast shutdown, then remove the data directory."""
        if self._process is not None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.base, ignore_errors=True)
