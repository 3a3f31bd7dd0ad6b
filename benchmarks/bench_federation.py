"""Cross-node vs same-node routing: signed messages/s and latency, in one run.

Run: python benchmarks/bench_federation.py [--pairs 10] [--messages 600]

Two real nodes (B bootstraps from A). Same-node: sender and receiver agents
both on A. Cross-node: senders on A, receivers homed on B, so every message
is appended by A (the thread owner), queued in A's outbox in the same
transaction, delivered to B over node-authenticated gRPC, mirrored and
streamed to the receiver. Latency: Submit start -> receiver's stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.request
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._node import BenchNode
from benchmarks.bench_routing import pct, register, signed_msg
from coral.protocol.codec import message_to_proto
from coral.protocol.message import DataPart, TextPart, now_ms
from coral.protocol.request_auth import sign_request
from coral.v1 import agents_pb2_grpc, coordination_pb2, coordination_pb2_grpc


def known_agents(node: BenchNode) -> set[str]:
    with urllib.request.urlopen(node.info["http_address"] + "/v1/agents?all=true", timeout=5) as r:
        return {a["agent"] for a in json.loads(r.read())["agents"]}


async def run(
    sender_node: BenchNode, receiver_node: BenchNode, pairs: int, per_pair: int
) -> dict[str, float]:
    async with (
        grpc.aio.insecure_channel(sender_node.info["grpc_address"]) as ch_a,
        grpc.aio.insecure_channel(receiver_node.info["grpc_address"]) as ch_b,
    ):
        agents_a = agents_pb2_grpc.AgentServiceStub(ch_a)
        agents_b = agents_pb2_grpc.AgentServiceStub(ch_b)
        coord_a = coordination_pb2_grpc.CoordinationServiceStub(ch_a)
        coord_b = coordination_pb2_grpc.CoordinationServiceStub(ch_b)
        senders = [
            await register(agents_a, sender_node.info["node_id"], f"s{i}") for i in range(pairs)
        ]
        receivers = [
            await register(agents_b, receiver_node.info["node_id"], f"r{i}") for i in range(pairs)
        ]
        deadline = time.monotonic() + 30
        while not {r.did for r in receivers} <= known_agents(sender_node):
            if time.monotonic() > deadline:
                raise TimeoutError("directory did not converge")
            await asyncio.sleep(0.2)
        threads = []
        for s, r in zip(senders, receivers, strict=True):
            created = await coord_a.Submit(
                coordination_pb2.SubmitRequest(
                    message=message_to_proto(
                        signed_msg(
                            s,
                            "thread.create",
                            None,
                            [DataPart(data={"name": "t", "participants": [r.did]})],
                        )
                    )
                )
            )
            threads.append(created.thread.id)
        sent_at: dict[str, float] = {}
        latencies: list[float] = []
        ready = [asyncio.Event() for _ in range(pairs)]

        async def receive(i: int) -> None:
            req = coordination_pb2.WaitRequest(kind="mention")
            auth = sign_request(
                receivers[i],
                "RPC",
                "/coral.v1.CoordinationService/Subscribe",
                req.SerializeToString(),
                now_ms(),
            )
            stream = coord_b.Subscribe(req, metadata=(("coral-auth", auth),))
            ready[i].set()
            got = 0
            async for item in stream:
                if item.entry.message.id in sent_at:
                    latencies.append(time.perf_counter() - sent_at[item.entry.message.id])
                    got += 1
                    if got == per_pair:
                        stream.cancel()
                        return

        async def send(i: int) -> None:
            await ready[i].wait()
            for k in range(per_pair):
                msg = signed_msg(
                    senders[i], "message", threads[i], [TextPart(text=f"m{k}")], [receivers[i].did]
                )
                sent_at[msg.id] = time.perf_counter()
                await coord_a.Submit(coordination_pb2.SubmitRequest(message=message_to_proto(msg)))

        tasks = [asyncio.create_task(receive(i)) for i in range(pairs)]
        await asyncio.sleep(0.3)
        start = time.perf_counter()
        await asyncio.gather(*(send(i) for i in range(pairs)))
        await asyncio.wait_for(asyncio.gather(*tasks), 180)
        elapsed = time.perf_counter() - start
    return {
        "rate": pairs * per_pair / elapsed,
        "p50": pct(latencies, 0.5) * 1000,
        "p99": pct(latencies, 0.99) * 1000,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--messages", type=int, default=600, help="total messages per run")
    args = parser.parse_args()
    per_pair = max(1, args.messages // args.pairs)
    with BenchNode("--log-level", "warning") as a:
        with BenchNode("--bootstrap", a.info["grpc_address"]) as b:
            same = await run(a, a, args.pairs, per_pair)
            cross = await run(a, b, args.pairs, per_pair)
    print(f"pairs={args.pairs} messages={args.pairs * per_pair}")
    print(
        f"same-node   {same['rate']:8.0f} msg/s  p50 {same['p50']:6.1f} ms  p99 {same['p99']:6.1f} ms"
    )
    print(
        f"cross-node  {cross['rate']:8.0f} msg/s  p50 {cross['p50']:6.1f} ms  p99 {cross['p99']:6.1f} ms"
    )
    print(
        f"cross/same throughput ratio {cross['rate'] / same['rate']:.2f}, "
        f"p50 latency ratio {cross['p50'] / same['p50']:.1f}x"
    )


if __name__ == "__main__":
    asyncio.run(main())
