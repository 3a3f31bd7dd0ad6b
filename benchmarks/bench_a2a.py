"""A2A SendMessage through a Coral node vs the a2a-sdk reference server, same run.

Run: python benchmarks/bench_a2a.py [--requests 200] [--concurrency 8]

Ours: the real a2a-sdk client -> node (A2A front door -> signed Coral thread
message -> SDK echo agent in its own process -> reply -> task completed).
Baseline: the same client -> the a2a-sdk reference server (DefaultRequestHandler,
InMemoryTaskStore, a trivial executor that answers at once) in its own process.
Both over JSON-RPC and gRPC; prints requests/s, p50, p99 and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import httpx
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.types import a2a_pb2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _node import BenchNode

ECHO_AGENT = """
import asyncio, sys
from coral_sdk import Agent, AgentManifest
class Echo(Agent):
    manifest = AgentManifest(name="echo", description="echo")
    concurrency = 64
    async def on_mention(self, message):
        return "echo: " + message.text
asyncio.run(Echo(sys.argv[1], key_file=sys.argv[2]).run())
"""


def request(text: str) -> a2a_pb2.SendMessageRequest:
    message = a2a_pb2.Message(
        message_id=str(uuid.uuid4()), role=a2a_pb2.Role.ROLE_USER, parts=[a2a_pb2.Part(text=text)]
    )
    return a2a_pb2.SendMessageRequest(message=message)


async def measure(base_url: str, binding: str, n: int, concurrency: int) -> dict[str, float]:
    """Send ``n`` unary SendMessage calls with ``concurrency`` in flight; rate and latencies."""
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64)) as http:
        card = await A2ACardResolver(http, base_url).get_agent_card()
        config = ClientConfig(
            streaming=False,
            httpx_client=http,
            supported_protocol_bindings=[binding],
            grpc_channel_factory=lambda url: grpc.aio.insecure_channel(url),
        )
        client = await create_client(card, config)
        for _ in range(10):  # warm up connections and caches
            [e async for e in client.send_message(request("warm"))]
        latencies: list[float] = []
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            queue.put_nowait(i)

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                started = time.perf_counter()
                events = [e async for e in client.send_message(request(f"m{i}"))]
                latencies.append(time.perf_counter() - started)
                assert events[-1].task.status.state == a2a_pb2.TaskState.TASK_STATE_COMPLETED

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        await client.close()
    latencies.sort()
    return {
        "rps": n / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def start_reference() -> tuple[subprocess.Popen[str], dict[str, str]]:
    """The reference server in its own process, and where it listens."""
    reference = subprocess.Popen(
        [sys.executable, "-m", "tests.interop.reference_a2a"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reference.stdout is not None
    return reference, json.loads(reference.stdout.readline())


def start_echo(http: str, key: Path) -> subprocess.Popen[bytes]:
    """The SDK echo agent in its own process."""
    return subprocess.Popen([sys.executable, "-c", ECHO_AGENT, http, str(key)], cwd=ROOT)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    reference, ref = start_reference()
    with BenchNode() as node:
        http = node.info["http_address"]
        echo = start_echo(http, node.data_dir.parent / "echo.key")
        try:
            async with httpx.AsyncClient() as probe:
                for _ in range(200):
                    if (await probe.get(f"{http}/a2a/echo/.well-known/agent-card.json")).is_success:
                        break
                    await asyncio.sleep(0.05)
            rows = []
            for binding in ("JSONRPC", "GRPC"):
                base = await measure(ref["http"], binding, args.requests, args.concurrency)
                ours = await measure(f"{http}/a2a/echo", binding, args.requests, args.concurrency)
                rows.append((binding, base, ours))
        finally:
            echo.terminate()
            echo.wait(10)
            reference.stdin.close()  # type: ignore[union-attr]
            reference.wait(10)
    print(f"A2A SendMessage, {args.requests} requests, concurrency {args.concurrency}")
    print(
        "| binding | reference req/s | node req/s | ratio | reference p50/p99 ms "
        "| node p50/p99 ms |"
    )
    print("|---|---|---|---|---|---|")
    for binding, base, ours in rows:
        print(
            f"| {binding} | {base['rps']:.0f} | {ours['rps']:.0f} | "
            f"{ours['rps'] / base['rps']:.2f}x | {base['p50_ms']:.1f} / {base['p99_ms']:.1f} | "
            f"{ours['p50_ms']:.1f} / {ours['p99_ms']:.1f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
