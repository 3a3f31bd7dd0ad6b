"""Signed messages routed per second, sender -> node (persisted) -> waiting receiver.

Run: python benchmarks/bench_routing.py [--pairs 1 10 100] [--messages 200]

For each concurrency level, P sender/receiver agent pairs share P threads on
one real node process; each receiver holds a gRPC Subscribe stream and each
sender submits signed messages over gRPC one after another. Latency is from
the start of the sender's Submit to the receiver's stream delivering it. The
baseline, measured in the same run, is a bare grpc.aio echo server with the
same number of concurrent callers and the same payload size.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._node import BenchNode
from coral.api.grpc.convert import record_to_proto
from coral.protocol.agent import AgentManifest, AgentRecord, sign_record_as_agent
from coral.protocol.codec import message_to_proto
from coral.protocol.identity import Identity
from coral.protocol.message import DataPart, Message, TextPart, new_message_id, now_ms
from coral.protocol.request_auth import sign_request
from coral.protocol.signing import sign_message
from coral.v1 import agents_pb2, agents_pb2_grpc, coordination_pb2, coordination_pb2_grpc


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def register(stub: agents_pb2_grpc.AgentServiceStub, node_id: str, name: str) -> Identity:
    identity = Identity.generate()
    record = AgentRecord(
        agent=identity.did,
        home_node=node_id,
        manifest=AgentManifest(name=name),
        version=1,
        updated_at=now_ms(),
    )
    signed = sign_record_as_agent(record, identity)
    await stub.RegisterAgent(agents_pb2.RegisterAgentRequest(record=record_to_proto(signed)))
    return identity


def signed_msg(identity: Identity, kind: str, thread: str | None, parts, mentions=()) -> Message:
    msg = Message(
        id=new_message_id(),
        kind=kind,
        sender=identity.did,
        thread=thread,
        mentions=tuple(mentions),
        created_at=now_ms(),
        parts=tuple(parts),
    )
    return sign_message(msg, identity)


async def run_pairs(node: BenchNode, pairs: int, per_pair: int) -> dict[str, float]:
    async with grpc.aio.insecure_channel(node.info["grpc_address"]) as channel:
        agents = agents_pb2_grpc.AgentServiceStub(channel)
        coord = coordination_pb2_grpc.CoordinationServiceStub(channel)
        node_id = node.info["node_id"]
        senders, receivers, threads = [], [], []
        for i in range(pairs):
            s = await register(agents, node_id, f"s{i}")
            r = await register(agents, node_id, f"r{i}")
            created = await coord.Submit(
                coordination_pb2.SubmitRequest(
                    message=message_to_proto(
                        signed_msg(
                            s,
                            "thread.create",
                            None,
                            [DataPart(data={"name": f"t{i}", "participants": [r.did]})],
                        )
                    )
                )
            )
            senders.append(s)
            receivers.append(r)
            threads.append(created.thread.id)
        sent_at: dict[str, float] = {}
        latencies: list[float] = []
        ready = [asyncio.Event() for _ in range(pairs)]

        async def receive(i: int) -> None:
            r = receivers[i]
            req = coordination_pb2.WaitRequest(kind="mention")
            auth = sign_request(
                r,
                "RPC",
                "/coral.v1.CoordinationService/Subscribe",
                req.SerializeToString(),
                now_ms(),
            )
            stream = coord.Subscribe(req, metadata=(("coral-auth", auth),))
            ready[i].set()
            got = 0
            async for item in stream:
                mid = item.entry.message.id
                if mid in sent_at:
                    latencies.append(time.perf_counter() - sent_at[mid])
                    got += 1
                    if got == per_pair:
                        stream.cancel()
                        return

        async def send(i: int) -> None:
            await ready[i].wait()
            s, r = senders[i], receivers[i]
            for k in range(per_pair):
                msg = signed_msg(
                    s, "message", threads[i], [TextPart(text=f"message {k} of pair {i}")], [r.did]
                )
                sent_at[msg.id] = time.perf_counter()
                await coord.Submit(coordination_pb2.SubmitRequest(message=message_to_proto(msg)))

        receivers_tasks = [asyncio.create_task(receive(i)) for i in range(pairs)]
        await asyncio.sleep(0.2)
        start = time.perf_counter()
        await asyncio.gather(*(send(i) for i in range(pairs)))
        await asyncio.wait_for(asyncio.gather(*receivers_tasks), 120)
        elapsed = time.perf_counter() - start
    total = pairs * per_pair
    return {
        "rate": total / elapsed,
        "p50": pct(latencies, 0.5) * 1000,
        "p99": pct(latencies, 0.99) * 1000,
    }


async def run_baseline(pairs: int, per_pair: int, payload: bytes) -> dict[str, float]:
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(lambda req, ctx: req)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        echo = channel.unary_unary("/bench.Echo/Echo")

        async def caller() -> None:
            for _ in range(per_pair):
                t = time.perf_counter()
                await echo(payload)
                latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(pairs)))
        elapsed = time.perf_counter() - start
    await server.stop(0)
    return {
        "rate": pairs * per_pair / elapsed,
        "p50": pct(latencies, 0.5) * 1000,
        "p99": pct(latencies, 0.99) * 1000,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--messages", type=int, default=2000, help="total messages per level")
    args = parser.parse_args()
    sample = message_to_proto(
        signed_msg(Identity.generate(), "message", "t", [TextPart(text="message 0 of pair 0")])
    )
    payload = sample.SerializeToString()
    print(
        f"{'pairs':>5} {'routed/s':>9} {'p50 ms':>7} {'p99 ms':>7} | {'echo/s':>8} {'p50 ms':>7} {'p99 ms':>7} | ratio"
    )
    with BenchNode() as node:
        for pairs in args.pairs:
            per_pair = max(1, args.messages // pairs)
            ours = await run_pairs(node, pairs, per_pair)
            base = await run_baseline(pairs, per_pair, payload)
            print(
                f"{pairs:>5} {ours['rate']:>9.0f} {ours['p50']:>7.1f} {ours['p99']:>7.1f} | "
                f"{base['rate']:>8.0f} {base['p50']:>7.2f} {base['p99']:>7.2f} | {base['rate'] / ours['rate']:.1f}x",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
