"""Run untrusted Python in a separate, limited, disposable interpreter.

Each run starts ``python -I -S sandbox_child.py`` in a fresh empty working
directory and its own process group, with an empty environment. The child
limits its own address space, CPU time and file size (``resource.setrlimit``),
refuses open/socket/subprocess/os events with an audit hook, and sees only a
small builtins set. The parent enforces a wall-clock timeout and kills the
whole process group when it passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHILD_SCRIPT = Path(__file__).with_name("sandbox_child.py")


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one sandboxed run."""

    wall_timeout_s: float = 5.0
    cpu_seconds: int = 2
    memory_bytes: int = 256 * 1024 * 1024
    max_output_chars: int = 4000


@dataclass(frozen=True)
class SandboxResult:
    """What came back from a sandboxed run.

    ``limit`` names the limit that stopped the code ("wall_time", "cpu_time",
    "memory") or is None; ``error`` carries the exception text, if any.
    """

    ok: bool
    stdout: str = ""
    value: str | None = None
    error: str | None = None
    limit: str | None = None


async def run_sandboxed(code: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Execute ``code`` in the sandbox and report its printed output and final value.

    Never raises for anything the code does; cancellation kills the child.
    """
    limits = limits or SandboxLimits()
    request = json.dumps(
        {
            "code": code,
            "memory_bytes": limits.memory_bytes,
            "cpu_seconds": limits.cpu_seconds,
            "max_output_chars": limits.max_output_chars,
        }
    ).encode("utf-8")
    with tempfile.TemporaryDirectory(prefix="agentflow-sandbox-") as workdir:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-S",
            str(CHILD_SCRIPT),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=workdir,
            env={"LC_ALL": "C.UTF-8"},
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(limits.wall_timeout_s):
                stdout, stderr = await process.communicate(request)
        except TimeoutError:
            await _kill_group(process)
            return SandboxResult(
                ok=False,
                error=f"stopped after {limits.wall_timeout_s} s wall time",
                limit="wall_time",
            )
        except BaseException:
            await _kill_group(process)
            raise
    return _interpret(process.returncode, stdout, stderr, limits)


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


def _interpret(
    returncode: int | None, stdout: bytes, stderr: bytes, limits: SandboxLimits
) -> SandboxResult:
    if returncode is not None and returncode < 0:
        signal_number = -returncode
        if signal_number == signal.SIGXCPU:
            return SandboxResult(
                ok=False,
                error=f"stopped after {limits.cpu_seconds} s of CPU time",
                limit="cpu_time",
            )
        name = signal.Signals(signal_number).name
        # SIGKILL from outside is how the kernel ends a process that ran out of memory.
        limit = "memory" if signal_number == signal.SIGKILL else None
        return SandboxResult(ok=False, error=f"killed by {name}", limit=limit)
    lines = stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        detail = stderr.decode("utf-8", "replace").strip()[-limits.max_output_chars :]
        # No report usually means the interpreter died allocating under RLIMIT_AS.
        limit = "memory" if "MemoryError" in detail or not detail else None
        return SandboxResult(ok=False, error=detail or "sandbox produced no report", limit=limit)
    error = report.get("error")
    limit = "memory" if isinstance(error, str) and error.startswith("MemoryError") else None
    return SandboxResult(
        ok=bool(report.get("ok")),
        stdout=str(report.get("stdout") or ""),
        value=report.get("value"),
        error=error,
        limit=limit,
    )
