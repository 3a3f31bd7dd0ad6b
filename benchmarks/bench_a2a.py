"""A2A SendMessage through a Coral node vs the a2a-sdk reference server, same run.

Run: python benchmarks/bench_a2a.py [--requests 200] [--concurrency 8] [--rounds 5]

Ours: the real a2a-sdk client -> node (A2A front door -> signed Coral thread
message -> SDK echo agent in its own process -> reply -> task completed).
Baseline: the same client -> the a2a-sdk reference server (DefaultRequestHandler,
InMemoryTaskStore, a trivial executor that answers at once) in its own process.
Both over JSON-RPC and gRPC, in alternating blocks (reference, node, ...): prints
requests/s, p50, p99 and the median per-round ratio with its spread, and the CPU
each server process spent per request (from /proc: the reference process; the
node process and the echo agent process), which a busy shared machine disturbs
less than the rates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import httpx
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.types import a2a_pb2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _node import BenchNode
from _stats import pct, ratio

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


async def make_client(http: httpx.AsyncClient, base_url: str, binding: str) -> Any:
    card = await A2ACardResolver(http, base_url).get_agent_card()
    config = ClientConfig(
        streaming=False,
        httpx_client=http,
        supported_protocol_bindings=[binding],
        grpc_channel_factory=lambda url: grpc.aio.insecure_channel(url.removeprefix("grpc://")),
    )
    client = await create_client(card, config)
    for _ in range(10):  # warm up connections and caches
        [e async for e in client.send_message(request("warm"))]
    return client


def cpu_s(pids: list[int]) -> float:
    """User+system CPU seconds the processes have used so far (Linux /proc; 0 elsewhere)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def block(client: Any, n: int, concurrency: int) -> tuple[float, list[float]]:
    """Send ``n`` unary SendMessage calls with ``concurrency`` in flight; rate and latencies."""
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
    return n / (time.perf_counter() - started), latencies


async def compare(
    ref_url: str,
    node_url: str,
    binding: str,
    n: int,
    concurrency: int,
    rounds: int,
    pids: dict[str, list[int]],
) -> dict[str, Any]:
    """Alternate blocks against the reference server and the node; median ratio and the
    median CPU ms per request of each subject's processes (``pids``)."""
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        ref = await make_client(http, ref_url, binding)
        ours = await make_client(http, node_url, binding)
        per = max(concurrency, n // rounds)
        rates: dict[str, list[float]] = {"ref": [], "ours": []}
        lat: dict[str, list[float]] = {"ref": [], "ours": []}
        cpu: dict[str, list[list[float]]] = {"ref": [], "ours": []}
        for _ in range(rounds):
            for name, client in (("ref", ref), ("ours", ours)):
                before = [cpu_s([pid]) for pid in pids[name]]
                rate, latencies = await block(client, per, concurrency)
                after = [cpu_s([pid]) for pid in pids[name]]
                rates[name].append(rate)
                lat[name] += latencies
                cpu[name].append([1000 * (a - b) / per for a, b in zip(after, before, strict=True)])
        await ref.close()
        await ours.close()
    return {
        "ref": statistics.median(rates["ref"]),
        "ours": statistics.median(rates["ours"]),
        "ratio": ratio(rates["ours"], rates["ref"]),
        "ref_lat": (pct(lat["ref"], 0.5) * 1000, pct(lat["ref"], 0.99) * 1000),
        "ours_lat": (pct(lat["ours"], 0.5) * 1000, pct(lat["ours"], 0.99) * 1000),
        "ref_cpu": [statistics.median(c) for c in zip(*cpu["ref"], strict=True)],
        "ours_cpu": [statistics.median(c) for c in zip(*cpu["ours"], strict=True)],
    }


async def agent_hop(
    grpc_address: str, n: int, concurrency: int, pids: list[int]
) -> dict[str, float]:
    """The hop through the agent process alone: a Coral agent mentions ``echo`` over gRPC
    and waits on its Subscribe stream for the reply (no A2A); ``concurrency`` threads.
    Also the CPU ms per round trip of the node and of the echo agent (``pids``)."""
    from bench_routing import node_id_of, register, signed_msg

    from coral.protocol.codec import message_to_proto
    from coral.protocol.message import DataPart, TextPart, now_ms
    from coral.protocol.request_auth import sign_request
    from coral.v1 import agents_pb2, agents_pb2_grpc, coordination_pb2, coordination_pb2_grpc

    async with grpc.aio.insecure_channel(grpc_address) as channel:
        agents = agents_pb2_grpc.AgentServiceStub(channel)
        coord = coordination_pb2_grpc.CoordinationServiceStub(channel)
        echo = await agents.GetAgent(agents_pb2.GetAgentRequest(agent="echo"))
        me = await register(agents, await node_id_of(grpc_address), f"hop-{uuid.uuid4().hex[:8]}")
        threads = []
        for i in range(concurrency):
            create = signed_msg(
                me, "thread.create", None,
                [DataPart(data={"name": f"hop{i}", "participants": [echo.agent]})],
            )  # fmt: skip
            done = await coord.Submit(
                coordination_pb2.SubmitRequest(message=message_to_proto(create))
            )
            threads.append(done.thread.id)
        req = coordination_pb2.WaitRequest(kind="mention")
        path = "/coral.v1.CoordinationService/Subscribe"
        auth = sign_request(me, "RPC", path, req.SerializeToString(), now_ms())
        stream = coord.Subscribe(req, metadata=(("coral-auth", auth),))
        replies: dict[str, asyncio.Queue[float]] = {t: asyncio.Queue() for t in threads}

        async def receive() -> None:
            async for item in stream:
                replies[item.entry.thread_id].put_nowait(time.perf_counter())

        reader = asyncio.create_task(receive())
        latencies: list[float] = []

        async def worker(thread: str, count: int) -> None:
            for k in range(count):
                msg = signed_msg(me, "message", thread, [TextPart(text=f"m{k}")], (echo.agent,))
                started = time.perf_counter()
                await coord.Submit(coordination_pb2.SubmitRequest(message=message_to_proto(msg)))
                latencies.append(await asyncio.wait_for(replies[thread].get(), 60) - started)

        await worker(threads[0], 5)  # warm up
        latencies.clear()
        before = [cpu_s([pid]) for pid in pids]
        started = time.perf_counter()
        await asyncio.gather(*(worker(t, max(1, n // concurrency)) for t in threads))
        elapsed = time.perf_counter() - started
        after = [cpu_s([pid]) for pid in pids]
        stream.cancel()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    node_cpu, echo_cpu = (
        1000 * (a - b) / len(latencies) for a, b in zip(after, before, strict=True)
    )
    return {
        "rps": len(latencies) / elapsed,
        "p50": pct(latencies, 0.5) * 1000,
        "p99": pct(latencies, 0.99) * 1000,
        "node_cpu": node_cpu,
        "echo_cpu": echo_cpu,
    }


def start_reference() -> tuple[subprocess.Popen[str], dict[str, str]]:
    """The reference server in its own process, and where it listens."""
    reference = subprocess.Popen(
        [sys.executable, "-m", "tests.api.interop.reference_a2a"],
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
    parser.add_argument("--requests", type=int, default=200, help="per subject and binding")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    reference, ref = start_reference()
    with BenchNode() as node:
        http = node.info["http_address"]
        echo = start_echo(http, node.data_dir.parent / "echo.key")
        try:
            # The first A2A request waits for the front door to load (in the background
            # after startup), and the echo agent must have registered.
            async with httpx.AsyncClient(timeout=120) as probe:
                for _ in range(600):
                    if (await probe.get(f"{http}/a2a/echo/.well-known/agent-card.json")).is_success:
                        break
                    await asyncio.sleep(0.05)
            rows = []
            assert node.proc is not None
            pids = {"ref": [reference.pid], "ours": [node.proc.pid, echo.pid]}
            for binding in ("JSONRPC", "GRPC"):
                result = await compare(
                    ref["http"], f"{http}/a2a/echo", binding, args.requests, args.concurrency,
                    args.rounds, pids,
                )  # fmt: skip
                rows.append((binding, result))
            hop = await agent_hop(
                node.info["grpc_address"], args.requests, args.concurrency, pids["ours"]
            )
        finally:
            echo.terminate()
            echo.wait(10)
            reference.stdin.close()  # type: ignore[union-attr]
            reference.wait(10)
    print(
        f"A2A SendMessage, {args.requests} requests per subject, concurrency {args.concurrency},"
        f" {args.rounds} interleaved rounds (reference, node, reference, node, ...)"
    )
    print("| binding | reference req/s | node req/s | node / reference | reference p50/p99 ms "
          "| node p50/p99 ms |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for binding, r in rows:
        print(
            f"| {binding} | {r['ref']:.0f} | {r['ours']:.0f} | {r['ratio']} |"
            f" {r['ref_lat'][0]:.1f} / {r['ref_lat'][1]:.1f} |"
            f" {r['ours_lat'][0]:.1f} / {r['ours_lat'][1]:.1f} |"
        )
    print("CPU ms per request, median of the rounds (user+system of each server process):")
    for binding, r in rows:
        node_cpu, echo_cpu = r["ours_cpu"]
        print(
            f"  {binding}: reference {r['ref_cpu'][0]:.2f}; node {node_cpu:.2f}"
            f" + echo agent {echo_cpu:.2f}"
        )
    print(
        f"agent-process hop alone (Coral message to the echo agent over gRPC, reply on a"
        f" Subscribe stream, no A2A): {hop['rps']:.0f} round trips/s,"
        f" p50 {hop['p50']:.1f} ms, p99 {hop['p99']:.1f} ms; CPU ms per round trip:"
        f" node {hop['node_cpu']:.2f}, echo agent {hop['echo_cpu']:.2f}"
    )
    for binding, r in rows:
        goal = "met" if r["ratio"].median >= 1.0 else "MISSED"
        print(f"goal, {binding}: node >= 1.0x the reference: {r['ratio'].median:.2f}x, {goal}")


if __name__ == "__main__":
    asyncio.run(main())
