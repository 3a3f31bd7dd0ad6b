"""Start a real coral-node process for a benchmark (ports chosen by the OS)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


class BenchNode:
    """A node subprocess in a temporary data dir; use as a context manager."""

    def __init__(
        self, *extra: str, env: dict[str, str] | None = None, keys_from: Path | None = None
    ) -> None:
        """``env`` adds CORAL_* variables; ``keys_from`` is a keys dir to start with (a replica)."""
        self._tmp = tempfile.TemporaryDirectory(prefix="coral-bench-")
        self.data_dir = Path(self._tmp.name) / "node"
        self.extra = list(extra)
        self.env = env or {}
        self.keys_from = keys_from
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    def __enter__(self) -> BenchNode:
        if self.keys_from is not None:
            shutil.copytree(self.keys_from, self.data_dir / "keys")
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
                "--log-level",
                "warning",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **self.env},
        )
        runtime = self.data_dir / "node.json"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                info = json.loads(runtime.read_text())
                if info.get("pid") == self.proc.pid:
                    self.info = info
                    return self
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.05)
        raise TimeoutError("node did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
        self._tmp.cleanup()
