"""Many waiting agents on one node: memory per waiting agent and routing latency under load.

Run: python benchmarks/bench_load.py [--agents 1000] [--messages 200] [--max-seconds 240]

One real node process. ``--agents`` agents register and each holds an HTTP
long-poll (``GET /v1/inbox``, re-polled when it times out) open at once. The
node's resident memory (VmRSS from /proc/<pid>/status) is read with every
agent registered but none waiting, then with all waiting: the difference per
agent is the cost of one waiting agent. Routing latency is a ping: a sender
posts a message mentioning a receiver that is long-polling, timed until the
receiver's poll returns it; measured first with nobody else waiting
(baseline, same run) and then under the full load. Bounded by
``--max-seconds``; the script stops early rather than run on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._node import BenchNode
from coral.protocol.agent import AgentManifest, AgentRecord, sign_record_as_agent
from coral.protocol.codec import message_to_json
from coral.protocol.identity import Identity
from coral.protocol.message import DataPart, Message, TextPart, new_message_id, now_ms
from coral.protocol.request_auth import sign_request
from coral.protocol.signing import sign_message

JSON = {"Content-Type": "application/json"}


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS line")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def message(
    sender: Identity,
    kind: str,
    thread: str | None,
    parts: list[Any],
    mentions: tuple[str, ...] = (),
) -> bytes:
    now = now_ms()
    msg = Message(
        id=new_message_id(now),
        kind=kind,
        sender=sender.did,
        thread=thread,
        mentions=mentions,
        created_at=now,
        parts=tuple(parts),
    )
    return message_to_json(sign_message(msg, sender))


class Agent:
    """One benchmark agent speaking HTTP."""

    def __init__(self, session: aiohttp.ClientSession, base: str, name: str) -> None:
        self.identity = Identity.generate()
        self.session = session
        self.base = base
        self.name = name
        self.cursor = 0

    async def register(self, node_id: str) -> None:
        record = AgentRecord(
            agent=self.identity.did,
            home_node=node_id,
            manifest=AgentManifest(name=self.name),
            version=1,
            updated_at=now_ms(),
        )
        body = json.dumps(sign_record_as_agent(record, self.identity).model_dump(mode="json"))
        async with self.session.post(self.base + "/v1/agents", data=body, headers=JSON) as resp:
            assert resp.status == 201, await resp.text()

    async def poll(self, timeout_ms: int) -> list[dict[str, Any]]:
        """One long-poll; advances the cursor; returns the entries."""
        query = urlencode({"kind": "message", "after": self.cursor, "timeout_ms": timeout_ms})
        target = f"/v1/inbox?{query}"
        auth = sign_request(self.identity, "GET", target, b"", now_ms())
        async with self.session.get(self.base + target, headers={"Authorization": auth}) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
        self.cursor = body["cursor"]
        entries: list[dict[str, Any]] = body["entries"]
        return entries

    async def post(self, raw: bytes) -> dict[str, Any]:
        async with self.session.post(self.base + "/v1/messages", data=raw, headers=JSON) as resp:
            assert resp.status == 201, await resp.text()
            result: dict[str, Any] = await resp.json()
            return result


async def wait_forever(agent: Agent, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await agent.poll(60_000)


async def waits_open(session: aiohttp.ClientSession, base: str) -> float:
    async with session.get(base + "/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith("coral_waits_open "):
                return float(line.split()[1])
    return 0.0


async def ping_latencies(sender: Agent, receiver: Agent, thread: str, count: int) -> list[float]:
    """Post ``count`` messages one at a time; seconds from post to the receiver's poll."""
    latencies = []
    for i in range(count):
        poll = asyncio.create_task(receiver.poll(30_000))
        await asyncio.sleep(0.005)  # let the poll reach the node first
        raw = message(
            sender.identity,
            "message",
            thread,
            [TextPart(text=f"ping {i}")],
            (receiver.identity.did,),
        )
        started = time.perf_counter()
        await sender.post(raw)
        entries = await poll
        while not entries:
            entries = await receiver.poll(30_000)
        latencies.append(time.perf_counter() - started)
    return latencies


async def run(agents: int, messages: int, max_seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + max_seconds
    with BenchNode() as node:
        assert node.proc is not None
        pid = node.proc.pid
        base = node.info["http_address"]
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=90)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            sender, receiver = Agent(session, base, "sender"), Agent(session, base, "receiver")
            await sender.register(node.info["node_id"])
            await receiver.register(node.info["node_id"])
            create = message(
                sender.identity,
                "thread.create",
                None,
                [
                    DataPart(
                        data={
                            "name": "ping",
                            "participants": [sender.identity.did, receiver.identity.did],
                        }
                    )
                ],
            )
            thread = (await sender.post(create))["thread"]["id"]
            waiters = [Agent(session, base, f"waiter-{i}") for i in range(agents)]
            gate = asyncio.Semaphore(32)

            async def register(agent: Agent) -> None:
                async with gate:
                    await agent.register(node.info["node_id"])

            await asyncio.gather(*(register(a) for a in waiters))
            await ping_latencies(sender, receiver, thread, 20)  # warm up
            idle = await ping_latencies(sender, receiver, thread, messages)
            await asyncio.sleep(1.0)
            rss_idle = rss_bytes(pid)

            stop = asyncio.Event()
            tasks = [asyncio.create_task(wait_forever(a, stop)) for a in waiters]
            while await waits_open(session, base) < agents:
                if time.monotonic() > deadline:
                    raise TimeoutError("not every agent got to wait within --max-seconds")
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)
            rss_loaded = rss_bytes(pid)
            loaded = await ping_latencies(sender, receiver, thread, messages)
            still_waiting = await waits_open(session, base)
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "agents": agents,
        "messages": messages,
        "rss_idle_mib": rss_idle / 2**20,
        "rss_loaded_mib": rss_loaded / 2**20,
        "rss_per_waiting_agent_kib": (rss_loaded - rss_idle) / agents / 1024,
        "still_waiting": still_waiting,
        "idle_p50_ms": statistics.median(idle) * 1000,
        "idle_p99_ms": pct(idle, 0.99) * 1000,
        "loaded_p50_ms": statistics.median(loaded) * 1000,
        "loaded_p99_ms": pct(loaded, 0.99) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=240.0)
    args = parser.parse_args()
    r = asyncio.run(run(args.agents, args.messages, args.max_seconds))
    print(f"waiting agents: {r['agents']} (still waiting while measured: {r['still_waiting']:.0f})")
    print(
        f"node RSS: {r['rss_idle_mib']:.1f} MiB with none waiting, "
        f"{r['rss_loaded_mib']:.1f} MiB with all waiting -> "
        f"{r['rss_per_waiting_agent_kib']:.1f} KiB per waiting agent"
    )
    print("| routing latency (post -> receiver's long-poll returns) | p50 | p99 |")
    print("|---|---|---|")
    print(
        f"| nobody else waiting (baseline) | {r['idle_p50_ms']:.2f} ms | {r['idle_p99_ms']:.2f} ms |"
    )
    print(
        f"| {r['agents']} agents waiting | {r['loaded_p50_ms']:.2f} ms | {r['loaded_p99_ms']:.2f} ms |"
    )
    print(
        f"| loaded / baseline | {r['loaded_p50_ms'] / r['idle_p50_ms']:.2f}x "
        f"| {r['loaded_p99_ms'] / r['idle_p99_ms']:.2f}x |"
    )


if __name__ == "__main__":
    main()
