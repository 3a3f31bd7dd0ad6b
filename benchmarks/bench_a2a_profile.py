"""Where a node's time goes while it serves A2A SendMessage (py-spy over bench_a2a's load).

Run: python benchmarks/bench_a2a_profile.py [--binding GRPC] [--requests 600]   (needs py-spy)

Starts a node and the SDK echo agent as ``bench_a2a`` does, sends unary
``SendMessage`` calls with the real a2a-sdk client (8 in flight) and samples
the node with ``py-spy record`` (250 Hz, GIL-holding samples only, so waiting
is left out and shares are of busy time) while they run. Each sample is put in
the first role whose frames it contains: the A2A task store, the Coral work of
the A2A executor (signing, verifying and persisting the gateway's
``thread.create`` and message, following the agent's reply), the a2a-sdk's own
request machinery (JSON-RPC dispatch or gRPC handler, ``ActiveTask``, event
queues, ``TaskManager``), the echo agent's requests into the node (its
long-poll and its reply ``POST``), aiohttp's own handling of any request, the
SQLite thread; time in C with no Python frame (gRPC core, uvloop) shows as the
loop's run call.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _node import BenchNode
from bench_a2a import block, make_client, start_echo

IDLE = ("select (selectors.py", "epoll")
ROLES = [
    (
        "A2A task store (coral/api/a2a tasks, write_behind; coral/store/a2a_sqlite)",
        ("ScopedTaskStore", "DeferredRunningWrites", "SqliteA2ATaskRecords", "ScopedPushConfigs"),
    ),
    (
        "Coral work of the A2A executor (sign, verify, persist thread.create + message; replies)",
        ("CoralAgentExecutor", "InboxFanout", "LazyGateway"),
    ),
    (
        "a2a-sdk request machinery (JSON-RPC/gRPC handler, ActiveTask, event queues, TaskManager)",
        ("a2a/", "culsans/", "aiologic/", "starlette/", "asgi_bridge", "front_door"),
    ),
    (
        "the echo agent's requests (long-poll GET /v1/inbox, reply POST /v1/messages)",
        ("submit (coral/api/http/coordination", "wait (coral/api/http/coordination"),
    ),
    ("aiohttp's own request handling (every HTTP request)", ("aiohttp/",)),
    ("SQLite thread", ("_connection_worker_thread", "_ConnectionThread._work")),
]


def summarize(raw: Path) -> list[str]:
    """Share of busy samples per role."""
    counts: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, n_text = line.rsplit(" ", 1)
        frames = stack.split(";")
        if any(mark in frames[-1] for mark in IDLE):
            continue
        n = int(n_text)
        busy += n
        for name, marks in ROLES:
            if any(mark in frame for frame in frames for mark in marks):
                counts[name] += n
                break
        else:
            loop_c = frames[-1].startswith("Runner.run")
            counts["gRPC core and event loop in C (no Python frame)" if loop_c else "other"] += n
    if not busy:
        return ["no busy samples"]
    out = [f"{busy} busy samples; share by role:"]
    out += [f"  {100 * n / busy:5.1f}%  {name}" for name, n in counts.most_common()]
    return out


async def drive(node: BenchNode, binding: str, requests: int, raw: Path, pyspy: str) -> str:
    """Load the node over ``binding`` while py-spy samples it; py-spy's stderr."""
    assert node.proc is not None
    http = node.info["http_address"]
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64)) as client:
        for _ in range(600):
            if (await client.get(f"{http}/a2a/echo/.well-known/agent-card.json")).is_success:
                break
            await asyncio.sleep(0.05)
        a2a = await make_client(client, f"{http}/a2a/echo", binding)
        await block(a2a, 50, 8)
        command = [pyspy, "record", "-p", str(node.proc.pid), "-r", "250", "-f", "raw"]
        spy = await asyncio.create_subprocess_exec(
            *command, "-o", str(raw), "--nonblocking", "--gil",
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        await asyncio.sleep(1.0)  # py-spy attaches
        await block(a2a, requests, 8)
        spy.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(spy.communicate(), 60)
        await a2a.close()
    return err.decode(errors="replace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binding", choices=("GRPC", "JSONRPC"), default="GRPC")
    parser.add_argument("--requests", type=int, default=600)
    args = parser.parse_args()
    pyspy = shutil.which("py-spy")
    if pyspy is None:
        print("py-spy is not installed (pip install py-spy): no profile taken")
        return 0
    with BenchNode() as node, tempfile.TemporaryDirectory() as tmp:
        echo = start_echo(node.info["http_address"], node.data_dir.parent / "echo.key")
        raw = Path(tmp) / "profile.txt"
        try:
            err = asyncio.run(drive(node, args.binding, args.requests, raw, pyspy))
        finally:
            echo.terminate()
            echo.wait(10)
        print(f"node serving A2A SendMessage over {args.binding}, 8 in flight, py-spy 250 Hz")
        lines = summarize(raw) if raw.exists() else ["py-spy wrote no profile:", err[-2000:]]
        for line in lines:
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
