"""The README's example agents run with one command against a real node."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from coral.protocol.identity import Identity
from coral_sdk import AgentManifest, CoralClient

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, node_url: str, timeout: float = 60) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--node", node_url],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_conversation_example(node):
    out = run_example("conversation.py", node.http)
    assert "student: 2 + 3 = 5" in out and "student: 6 * 7 = 42" in out and "12 + 30 = 42" in out


def test_round_robin_team_example(node):
    out = run_example("round_robin_team.py", node.http)
    lines = [line for line in out.splitlines() if "speaking" in line]
    assert lines == [f"{n} speaking in round {r}" for r in (1, 2) for n in ("ada", "grace", "alan")]


async def test_echo_example(node, tmp_path):
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "echo_agent.py"),
        "--node",
        node.http,
        "--key-file",
        str(tmp_path / "echo.key"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert b"registered" in line
        async with CoralClient(node.http, Identity.generate()) as alice:
            await alice.register(AgentManifest(name="alice"))
            thread = await alice.create_thread("t", ["echo"])
            echo_did = thread["participants"][1]
            await alice.send(thread["id"], "ping", mentions=[echo_did])
            got = await alice.wait("mention", timeout_ms=10_000)
            assert got["entries"][0]["entry"]["message"]["parts"][0]["text"] == "echo: ping"
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 20) == 0


def test_team_formation_example(node):
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "team_formation.py"),
            "--node",
            node.http,
            "--data-dir",
            str(node.data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "forming team" in result.stdout
