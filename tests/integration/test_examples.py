"""The README's example agents run with one command against a real node."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
            echo_did = thread.participants[1]
            await alice.send(thread.id, "ping", mentions=[echo_did])
            got = await alice.wait("mention", timeout_ms=10_000)
            assert got.entries[0].entry.message.text() == "echo: ping"
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


@pytest.mark.parametrize(
    "name", ["conversation.py", "echo_agent.py", "round_robin_team.py", "team_formation.py"]
)
def test_example_without_a_node_exits_1_with_one_line(name, tmp_path):
    # Port 1 on 127.0.0.1: nothing listens there, the connect is refused at once.
    url = "http://127.0.0.1:1"
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--node", url],
        capture_output=True,
        text=True,
        timeout=60,  # a hang detector: the example must not wait for a node forever
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path)},
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith(f"error: node unreachable at {url} ")
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.key")), "no key file in the working directory"


def test_echo_example_keeps_its_key_in_the_user_data_dir(node, tmp_path):
    data_home = tmp_path / "data-home"
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "echo_agent.py"), "--node", node.http],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "XDG_DATA_HOME": str(data_home)},
        cwd=workdir,
    )
    try:
        assert "registered" in proc.stdout.readline()
        assert (data_home / "coral-agent" / "echo.key").is_file()
        assert not list(workdir.iterdir())
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
