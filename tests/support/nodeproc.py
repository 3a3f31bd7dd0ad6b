"""Start real ``coral-node`` processes on 127.0.0.1 for integration tests."""

from __future__ import annotations

import json
import os
import resource
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class NodeProcess:
    """A node subprocess with its data dir; addresses come from its runtime file."""

    data_dir: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    log_path: Path | None = None
    #: Soft RLIMIT_NOFILE for the node process (None: inherit the test's).
    nofile: int | None = None

    def start(self, timeout: float = 30.0, wait_for_front_doors: bool = True) -> NodeProcess:
        """Start the node; return once it serves (and, by default, its A2A/MCP front doors too).

        The node loads the A2A and MCP front doors in the background after it
        serves; tests talk to them right away, so by default this waits for them.
        """
        runtime = self.data_dir / "node.json"
        if runtime.exists():
            runtime.unlink()
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        log = open(self.log_path, "a")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "coral",
                "start",
                "--data-dir",
                str(self.data_dir),
                "--grpc-port",
                "0",
                "--http-port",
                "0",
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            preexec_fn=self._limit_files if self.nofile is not None else None,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited early:\n{self.output()}")
            try:
                info = json.loads(runtime.read_text())
                if info.get("pid") == self.proc.pid:
                    self.info = info
                    if wait_for_front_doors:
                        self._wait_for_front_doors(max(60.0, deadline - time.monotonic()))
                    return self
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"node did not start:\n{self.output()}")

    def _wait_for_front_doors(self, timeout: float) -> None:
        # The node card is served by the lazily loaded A2A front door: it answers once loaded.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        url = self.http + "/.well-known/agent-card.json"
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
            resp.read()

    def _limit_files(self) -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert self.nofile is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, hard))

    @property
    def http(self) -> str:
        return str(self.info["http_address"])

    @property
    def grpc(self) -> str:
        return str(self.info["grpc_address"])

    @property
    def node_id(self) -> str:
        return str(self.info["node_id"])

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.http + path, timeout=10) as resp:
            return json.loads(resp.read())
