"""Signed messages routed per second, sender -> node (verified, persisted) -> subscribed receiver.

Run: python benchmarks/bench_routing.py [--pairs 10 100 1000] [--messages 2000] [--rounds 5]
     [--no-stream]   (unary and echo only: a node without SubmitStream)
     python benchmarks/bench_routing.py --address HOST:PORT [--pid PID]   (a node already running)

For each level, P sender/receiver agent pairs each share a thread on one real
node process, driven only through its public gRPC API: every receiver holds a
``Subscribe`` stream and every sender makes plain unary ``Submit`` calls, one
after another. Latency runs from the start of a Submit to the receiver's
stream delivering that message. The baseline is a bare grpc.aio echo server
in its own process, driven the same way: P concurrent callers, unary calls,
the same serialized SubmitRequest as payload. A third subject sends the same
kind of messages over ``SubmitStream`` instead (one long-lived stream per
sender, each message written once the previous one was answered, so one in
flight per sender as with the unary calls). The three are measured in
alternating blocks (unary, echo, stream, unary, echo, stream, ...) and each
ratio is the median over rounds of node / echo with its spread; the unary
figures are the headline, the issue's goals are checked against them. A
fourth subject, the bare relay in the echo server's process (``Relay`` unary
calls delivered to ``Listen`` streams: no verification, storage or Coral
code), does the gRPC work the node's unary path does per message, one unary
call plus one server-stream message; routed/relay is the share of that floor
the node reaches, and the relay's CPU per message is the floor for the node's. CPU per message is the server process's own
user+system time over the block divided by the messages it handled; memory per
waiting agent is the node's resident-memory growth when the P receivers open
their streams, divided by P. The client (this process) signs every message
before the block starts, so signing is not timed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._node import BenchNode
from benchmarks._stats import cpu_seconds, pct, ratio, rss_bytes
from coral.api.grpc.convert import record_to_proto
from coral.node.eventloop import loop_name, run
from coral.protocol.agent import AgentManifest, AgentRecord, sign_record_as_agent
from coral.protocol.codec import message_to_proto
from coral.protocol.identity import Identity
from coral.protocol.message import DataPart, Message, TextPart, new_message_id, now_ms
from coral.protocol.request_auth import sign_request
from coral.protocol.signing import sign_message
from coral.v1 import (
    agents_pb2,
    agents_pb2_grpc,
    coordination_pb2,
    coordination_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
)

HERE = Path(__file__).resolve().parent


def signed_msg(
    identity: Identity,
    kind: str,
    thread: str | None,
    parts: list[Any],
    mentions: tuple[str, ...] = (),
) -> Message:
    msg = Message(
        id=new_message_id(),
        kind=kind,
        sender=identity.did,
        thread=thread,
        mentions=mentions,
        created_at=now_ms(),
        parts=tuple(parts),
    )
    return sign_message(msg, identity)


@dataclass
class Block:
    """One timed block of one subject."""

    rate: float
    cpu_ms_per_msg: float | None
    latencies: list[float]


@dataclass
class Pairs:
    """P registered sender/receiver pairs, a thread each, receivers subscribed."""

    coord: coordination_pb2_grpc.CoordinationServiceStub
    senders: list[Identity]
    receivers: list[Identity]
    threads: list[str]
    sent_at: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    remaining: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    streams: list[Any] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    submit_streams: list[Any] = field(default_factory=list)

    async def subscribe(self) -> None:
        for r in self.receivers:
            req = coordination_pb2.WaitRequest(kind="mention")
            auth = sign_request(
                r,
                "RPC",
                "/coral.v1.CoordinationService/Subscribe",
                req.SerializeToString(),
                now_ms(),
            )
            stream = self.coord.Subscribe(req, metadata=(("coral-auth", auth),))
            self.streams.append(stream)
            self.tasks.append(asyncio.create_task(self._receive(stream)))

    async def _receive(self, stream: Any) -> None:
        try:
            async for item in stream:
                started = self.sent_at.pop(item.entry.message.id, None)
                if started is not None:
                    self.latencies.append(time.perf_counter() - started)
                    self.remaining -= 1
                    if self.remaining == 0:
                        self.done.set()
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise

    async def block(self, per_pair: int, pid: int | None, streamed: bool = False) -> Block:
        """One timed block: ``per_pair`` messages from every sender (``streamed``: on SubmitStream)."""
        msgs = [
            [
                message_to_proto(
                    signed_msg(
                        s, "message", t, [TextPart(text=f"message {k} of {s.did[-6:]}")], (r.did,)
                    )
                )
                for k in range(per_pair)
            ]
            for s, r, t in zip(self.senders, self.receivers, self.threads, strict=True)
        ]
        self.latencies = []
        self.remaining = len(self.senders) * per_pair
        self.done.clear()

        async def send(batch: list[Any]) -> None:
            for proto in batch:
                self.sent_at[proto.id] = time.perf_counter()
                await self.coord.Submit(coordination_pb2.SubmitRequest(message=proto))

        async def stream(call: Any, batch: list[Any]) -> None:
            for proto in batch:
                self.sent_at[proto.id] = time.perf_counter()
                await call.write(coordination_pb2.SubmitRequest(message=proto))
                answer = await call.read()
                if answer.WhichOneof("outcome") != "result":
                    raise RuntimeError(f"SubmitStream refused a message: {answer.error}")

        if streamed and not self.submit_streams:
            self.submit_streams = [self.coord.SubmitStream() for _ in self.senders]
        cpu0 = cpu_seconds(pid) if pid else 0.0
        start = time.perf_counter()
        if streamed:
            await asyncio.gather(
                *(stream(c, b) for c, b in zip(self.submit_streams, msgs, strict=True))
            )
        else:
            await asyncio.gather(*(send(b) for b in msgs))
        await asyncio.wait_for(self.done.wait(), 300)
        elapsed = time.perf_counter() - start
        total = len(self.senders) * per_pair
        cpu = (cpu_seconds(pid) - cpu0) * 1000 / total if pid else None
        return Block(total / elapsed, cpu, self.latencies)

    async def close(self) -> None:
        for call in self.submit_streams:
            await call.done_writing()
        for stream in [*self.streams, *self.submit_streams]:
            stream.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _bounded(coros: list[Any], limit: int = 50) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(c: Any) -> Any:
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


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


async def make_pairs(channel: grpc.aio.Channel, node_id: str, count: int, tag: str) -> Pairs:
    agents = agents_pb2_grpc.AgentServiceStub(channel)
    coord = coordination_pb2_grpc.CoordinationServiceStub(channel)
    senders = await _bounded([register(agents, node_id, f"{tag}s{i}") for i in range(count)])
    receivers = await _bounded([register(agents, node_id, f"{tag}r{i}") for i in range(count)])

    async def create(i: int) -> str:
        msg = signed_msg(
            senders[i],
            "thread.create",
            None,
            [DataPart(data={"name": f"{tag}t{i}", "participants": [receivers[i].did]})],
        )
        done = await coord.Submit(coordination_pb2.SubmitRequest(message=message_to_proto(msg)))
        return str(done.thread.id)

    threads = await _bounded([create(i) for i in range(count)])
    return Pairs(coord, senders, receivers, threads)


async def echo_block(
    channel: grpc.aio.Channel, callers: int, per: int, payload: bytes, pid: int
) -> Block:
    echo = channel.unary_unary("/bench.Echo/Echo")
    latencies: list[float] = []

    async def caller() -> None:
        for _ in range(per):
            t = time.perf_counter()
            await echo(payload)
            latencies.append(time.perf_counter() - t)

    cpu0 = cpu_seconds(pid)
    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = time.perf_counter() - start
    return Block(
        callers * per / elapsed, (cpu_seconds(pid) - cpu0) * 1000 / (callers * per), latencies
    )


@dataclass
class RelayPairs:
    """P senders and P listeners on the echo server's bare relay (no Coral at all)."""

    channel: grpc.aio.Channel
    pairs: int
    sent_at: dict[bytes, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    remaining: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    streams: list[Any] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @staticmethod
    def key(pair: int, k: int) -> bytes:
        """The first line of a relayed request: whom it is for and which one it is (24 bytes)."""
        return f"r{pair:07d}\n{k:015d}".encode()

    async def listen(self) -> None:
        """Open the P listener streams; return once the relay reaches every one of them."""
        listen = self.channel.unary_stream("/bench.Echo/Listen")
        relay = self.channel.unary_unary("/bench.Echo/Relay")
        for i in range(self.pairs):
            stream = listen(f"r{i:07d}".encode())
            self.streams.append(stream)
            self.tasks.append(asyncio.create_task(self._receive(stream)))
        pending = set(range(self.pairs))
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            self.remaining = -1  # probes are not counted
            for i in pending:
                self.sent_at[self.key(i, 0)] = -1.0
            await _bounded([self._probe(relay, i) for i in pending])
            await asyncio.sleep(0.05)
            pending = {i for i in pending if self.key(i, 0) in self.sent_at}
        if pending:
            raise TimeoutError(f"{len(pending)} relay listeners never opened")

    async def _probe(self, relay: Any, i: int) -> None:
        try:
            await relay(self.key(i, 0))
        except grpc.aio.AioRpcError:
            pass  # tried again on the next pass

    async def _receive(self, stream: Any) -> None:
        try:
            async for item in stream:
                started = self.sent_at.pop(item[:24], None)
                if started is not None and started >= 0:
                    self.latencies.append(time.perf_counter() - started)
                    self.remaining -= 1
                    if self.remaining == 0:
                        self.done.set()
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise

    async def block(self, per_pair: int, payload: bytes, pid: int) -> Block:
        """One timed block: ``per_pair`` relayed messages from every sender, one in flight each."""
        relay = self.channel.unary_unary("/bench.Echo/Relay")
        self.latencies = []
        self.remaining = self.pairs * per_pair
        self.done.clear()

        async def send(i: int) -> None:
            for k in range(1, per_pair + 1):
                key = self.key(i, k)
                self.sent_at[key] = time.perf_counter()
                await relay(key + payload)

        cpu0 = cpu_seconds(pid)
        start = time.perf_counter()
        await asyncio.gather(*(send(i) for i in range(self.pairs)))
        await asyncio.wait_for(self.done.wait(), 300)
        elapsed = time.perf_counter() - start
        total = self.pairs * per_pair
        return Block(total / elapsed, (cpu_seconds(pid) - cpu0) * 1000 / total, self.latencies)

    async def close(self) -> None:
        for stream in self.streams:
            stream.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def waits_open(http: str) -> float:
    with urllib.request.urlopen(f"{http}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("coral_waits_open "):
                return float(line.split()[1])
    return -1.0


async def until_waiting(http: str | None, expected: int) -> None:
    if not http:
        await asyncio.sleep(1.0)
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if await asyncio.to_thread(waits_open, http) >= expected:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"receivers did not all subscribe ({expected})")


async def level(
    address: str,
    http: str | None,
    node_id: str,
    pid: int | None,
    echo: tuple[str, int],
    pairs: int,
    messages: int,
    rounds: int,
    tag: str,
    with_stream: bool = True,
) -> dict[str, Any]:
    per_pair = max(1, messages // (pairs * rounds))
    sample = message_to_proto(
        signed_msg(
            Identity.generate(),
            "message",
            "t" * 26,
            [TextPart(text="message 0 of xxxxxx")],
            ("did:key:z" + "x" * 48,),
        )
    )
    payload = coordination_pb2.SubmitRequest(message=sample).SerializeToString()
    async with (
        grpc.aio.insecure_channel(address) as channel,
        grpc.aio.insecure_channel(echo[0]) as echo_channel,
    ):
        group = await make_pairs(channel, node_id, pairs, tag)
        base_waits = await asyncio.to_thread(waits_open, http) if http else 0
        rss0 = rss_bytes(pid) if pid else 0
        await group.subscribe()
        relays = RelayPairs(echo_channel, pairs)
        await relays.listen()
        await until_waiting(http, int(base_waits) + pairs)
        await asyncio.sleep(0.5)
        rss1 = rss_bytes(pid) if pid else 0
        # Warm all up (first calls set up connections, streams, caches, code paths), then
        # alternate.
        await group.block(1, pid)
        await echo_block(echo_channel, pairs, 1, payload, echo[1])
        if with_stream:
            await group.block(1, pid, streamed=True)
        await relays.block(1, payload, echo[1])
        relayed: list[Block] = []
        ours: list[Block] = []
        base: list[Block] = []
        streamed: list[Block] = []
        for _ in range(rounds):
            ours.append(await group.block(per_pair, pid))
            base.append(await echo_block(echo_channel, pairs, per_pair, payload, echo[1]))
            if with_stream:
                streamed.append(await group.block(per_pair, pid, streamed=True))
            relayed.append(await relays.block(per_pair, payload, echo[1]))
        await group.close()
        await relays.close()
    lat_ours = [x for b in ours for x in b.latencies]
    lat_base = [x for b in base for x in b.latencies]
    lat_stream = [x for b in streamed for x in b.latencies]
    return {
        "pairs": pairs,
        "messages": pairs * per_pair * rounds,
        "rate": statistics.median(b.rate for b in ours),
        "echo": statistics.median(b.rate for b in base),
        "ratio": ratio([b.rate for b in ours], [b.rate for b in base]),
        "p50": pct(lat_ours, 0.5) * 1000,
        "p99": pct(lat_ours, 0.99) * 1000,
        "echo_p50": pct(lat_base, 0.5) * 1000,
        "echo_p99": pct(lat_base, 0.99) * 1000,
        "cpu": statistics.median(b.cpu_ms_per_msg for b in ours) if pid else None,
        "relay": statistics.median(b.rate for b in relayed),
        "relay_ratio": ratio([b.rate for b in ours], [b.rate for b in relayed]),
        "relay_p99": pct([x for b in relayed for x in b.latencies], 0.99) * 1000,
        "relay_cpu": statistics.median(b.cpu_ms_per_msg or 0 for b in relayed),
        "stream": statistics.median(b.rate for b in streamed) if streamed else None,
        "stream_ratio": ratio([b.rate for b in streamed], [b.rate for b in base])
        if streamed
        else None,
        "stream_p50": pct(lat_stream, 0.5) * 1000,
        "stream_p99": pct(lat_stream, 0.99) * 1000,
        "stream_cpu": statistics.median(b.cpu_ms_per_msg for b in streamed)
        if pid and streamed
        else None,
        "echo_cpu": statistics.median(b.cpu_ms_per_msg or 0 for b in base),
        # Resident-memory growth is in allocator-sized steps: below ~100 waits it is noise.
        "kib_per_wait": (rss1 - rss0) / 1024 / pairs if pid and pairs >= 100 else None,
    }


def print_goals(results: dict[int, dict[str, Any]]) -> None:
    """The issue's goals, checked against this run's figures."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    if 100 in results:
        r = results[100]
        print(
            f"goal, 100 pairs: routed/echo >= 0.60x: {r['ratio'].median:.2f}x, {verdict(r['ratio'].median >= 0.6)}"
        )
        print(f"goal, 100 pairs: p99 < 50 ms: {r['p99']:.0f} ms, {verdict(r['p99'] < 50)}")
        if r["cpu"] is not None:
            print(
                f"goal, 100 pairs: node CPU <= 0.35 ms per routed message: {r['cpu']:.2f} ms"
                f" (the bare echo server uses {r['echo_cpu']:.2f} ms per call),"
                f" {verdict(r['cpu'] <= 0.35)}"
            )
        if r["stream"] is not None:
            cpu = f", node CPU {r['stream_cpu']:.2f} ms/msg" if r["stream_cpu"] is not None else ""
            print(
                "beyond the goals, 100 pairs on SubmitStream:"
                f" routed/echo {r['stream_ratio'].median:.2f}x, p99 {r['stream_p99']:.0f} ms{cpu}"
            )
    big = max(results) if results else 0
    if big >= 1000 and results[big]["kib_per_wait"] is not None:
        kib = results[big]["kib_per_wait"]
        print(
            f"goal, {big} pairs: <= 16 KiB per waiting agent: {kib:.1f} KiB, {verdict(kib <= 16)}"
        )


def start_echo() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_echo_server.py")], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    port = proc.stdout.readline().strip()
    return proc, f"127.0.0.1:{port}"


async def node_id_of(address: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        info = await node_pb2_grpc.NodeServiceStub(channel).GetNodeInfo(
            node_pb2.GetNodeInfoRequest()
        )
        return str(info.node_id)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--messages", type=int, default=2000, help="timed messages per level")
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks of each subject")
    parser.add_argument("--address", help="gRPC address of a running node (default: start one)")
    parser.add_argument("--http", help="HTTP base URL of that node (for its /metrics)")
    parser.add_argument("--pid", type=int, help="process id of that node (for CPU and memory)")
    parser.add_argument(
        "--no-stream", action="store_true", help="leave out SubmitStream (a node without it)"
    )
    args = parser.parse_args()
    echo_proc, echo_address = start_echo()
    try:
        if args.address:
            address, http, pid = args.address, args.http, args.pid
            node = None
        else:
            node = BenchNode().__enter__()
            address, http = node.info["grpc_address"], node.info["http_address"]
            pid = node.proc.pid if node.proc else None
        node_id = await node_id_of(address)
        print(f"event loop: node and echo server use {loop_name()} (CORAL_EVENT_LOOP); client too")
        print(
            f"{'pairs':>5} {'msgs':>6} {'routed/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'cpu ms/msg':>10} |"
            f" {'echo/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'cpu ms':>7} | {'KiB/wait':>8} | routed/echo"
        )
        results: dict[int, dict[str, Any]] = {}
        streams: dict[int, dict[str, Any]] = {}
        for i, pairs in enumerate(args.pairs):
            r = results[pairs] = await level(
                address,
                http,
                node_id,
                pid,
                (echo_address, echo_proc.pid),
                pairs,
                args.messages,
                args.rounds,
                f"l{i}",
                not args.no_stream,
            )
            cpu = f"{r['cpu']:.3f}" if r["cpu"] is not None else "n/a"
            kib = f"{r['kib_per_wait']:.1f}" if r["kib_per_wait"] is not None else "n/a"
            print(
                f"{pairs:>5} {r['messages']:>6} {r['rate']:>9.0f} {r['p50']:>7.1f} {r['p99']:>7.1f} {cpu:>10} |"
                f" {r['echo']:>7.0f} {r['echo_p50']:>7.2f} {r['echo_p99']:>7.2f} {r['echo_cpu']:>7.3f} |"
                f" {kib:>8} | {r['ratio']}",
                flush=True,
            )
            if r["stream"] is not None:
                streams[pairs] = r
        if streams:
            print(
                "the same levels and rounds, messages sent on SubmitStream (one stream per sender):"
            )
            print(
                f"{'pairs':>5} {'msgs':>6} {'routed/s':>9} {'p50 ms':>7} {'p99 ms':>7}"
                f" {'cpu ms/msg':>10} | stream/echo"
            )
        for pairs, r in streams.items():
            cpu = f"{r['stream_cpu']:.3f}" if r["stream_cpu"] is not None else "n/a"
            print(
                f"{pairs:>5} {r['messages']:>6} {r['stream']:>9.0f} {r['stream_p50']:>7.1f}"
                f" {r['stream_p99']:>7.1f} {cpu:>10} | {r['stream_ratio']}"
            )
        print("the same levels and rounds, the bare relay (no Coral: one unary call and one stream")
        print("message per message, in the echo server's process) against the node's unary path:")
        print(f"{'pairs':>5} {'relay/s':>9} {'p99 ms':>7} {'cpu ms/msg':>10} | routed/relay")
        for pairs, r in results.items():
            print(
                f"{pairs:>5} {r['relay']:>9.0f} {r['relay_p99']:>7.1f} {r['relay_cpu']:>10.3f} |"
                f" {r['relay_ratio']}"
            )
        print_goals(results)
        if node is not None:
            node.__exit__(None, None, None)
    finally:
        echo_proc.terminate()
        echo_proc.wait(10)


if __name__ == "__main__":
    run(main())
