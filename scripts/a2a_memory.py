"""Measure a node's resident memory before and after N A2A sends.

Usage::

    python scripts/a2a_memory.py [--sends 1000] [--node-repo PATH]

Starts ``coral-node`` on 127.0.0.1 (from ``--node-repo``, default this
checkout, so two versions can be compared), runs an SDK echo agent, sends 20
warm-up messages, reads the node's RSS from /proc, sends ``--sends`` more
JSON-RPC ``SendMessage`` calls (16 at a time), waits for the node to settle
and reads RSS again. Linux only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "sdk")]

from coral_sdk import Agent, AgentManifest, Incoming  # noqa: E402


class Echo(Agent):
    """Answers every mention at once."""

    manifest = AgentManifest(name="echo", description="echo")
    concurrency = 32

    async def on_mention(self, message: Incoming) -> str:
        return f"echo: {message.text}"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def send_many(url: str, count: int) -> None:
    semaphore = asyncio.Semaphore(16)
    async with httpx.AsyncClient(timeout=60) as http:

        async def one(i: int) -> None:
            async with semaphore:
                call = {
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "SendMessage",
                    "params": {
                        "message": {
                            "messageId": str(uuid.uuid4()),
                            "role": "ROLE_USER",
                            "parts": [{"text": f"message {i} " + "x" * 200}],
                        }
                    },
                }
                reply = await http.post(url, json=call, headers={"A2A-Version": "1.0"})
                assert "result" in reply.json(), reply.text

        await asyncio.gather(*(one(i) for i in range(count)))


def start_node(repo: Path) -> tuple[subprocess.Popen[bytes], dict[str, str], Path]:
    data = Path(tempfile.mkdtemp(prefix="coral-a2a-mem-")) / "node"
    env = {**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{repo / 'sdk'}"}
    command = [sys.executable, "-m", "coral", "start", "--data-dir", str(data)]
    command += ["--grpc-port", "0", "--http-port", "0"]
    log = open(data.parent / "node.log", "ab")
    node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    for _ in range(600):
        try:
            info = json.loads((data / "node.json").read_text())
            if info.get("pid") == node.pid:
                return node, info, data
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.1)
    node.kill()
    raise SystemExit("node did not start")


async def measure(info: dict[str, str], pid: int, key: Path, sends: int) -> tuple[int, int, float]:
    agent = Echo(info["http_address"], key_file=key)
    running = asyncio.create_task(agent.run())
    await agent.ready.wait()
    url = f"{info['http_address']}/a2a/echo/jsonrpc"
    await send_many(url, 20)
    await asyncio.sleep(2)
    before = rss_kib(pid)
    started = time.monotonic()
    await send_many(url, sends)
    took = time.monotonic() - started
    await asyncio.sleep(5)
    after = rss_kib(pid)
    agent.stop()
    await running
    return before, after, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=1000)
    parser.add_argument("--node-repo", type=Path, default=REPO)
    args = parser.parse_args()
    repo = args.node_repo.resolve()
    node, info, data = start_node(repo)
    try:
        before, after, took = asyncio.run(
            measure(info, node.pid, data.parent / "echo.key", args.sends)
        )
        print(
            f"node from {repo.name}: RSS {before / 1024:.1f} MiB before, "
            f"{after / 1024:.1f} MiB after {args.sends} sends "
            f"(+{(after - before) / 1024:.1f} MiB, {args.sends / took:.0f} sends/s)"
        )
    finally:
        node.terminate()
        node.wait(30)


if __name__ == "__main__":
    main()
