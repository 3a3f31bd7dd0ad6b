"""Coordination engine throughput and wake-up latency, as ratios to in-run baselines.

    python benchmarks/bench_coordination.py --n 500

Baselines: (1) a bare durable append of the same signed wire JSON into one
SQLite table, one transaction per message (the floor any persistent log pays);
(2) the engine's own send without anyone waiting, to price the wake-up path.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from coral.coordination.service import CoordinationService
from coral.protocol.canonical import canonical_json
from coral.protocol.identity import Identity
from coral.protocol.message import Message, TextPart, new_message_id, now_ms, to_wire
from coral.protocol.signing import sign_message
from coral.store.coordination_sqlite import SqliteCoordinationStore
from coral.store.sqlite import SqliteDatabase


def signed_messages(speakers: list[Identity], thread_id: str, n: int) -> list[Message]:
    """Pre-signed messages, so signing is not part of what is timed."""
    out = []
    for i in range(n):
        sender = speakers[i % len(speakers)]
        message = Message(
            id=new_message_id(),
            sender=sender.did,
            thread=thread_id,
            created_at=now_ms(),
            parts=(TextPart(text=f"message {i} " + "x" * 200),),
        )
        out.append(sign_message(message, sender))
    return out


async def bare_append(db: SqliteDatabase, messages: list[Message]) -> float:
    start = time.perf_counter()
    for message in messages:
        async with db.transaction() as conn:
            wire = canonical_json(to_wire(message)).decode()
            await conn.execute("INSERT INTO bare_log (id, wire) VALUES (?, ?)", (message.id, wire))
    return time.perf_counter() - start


async def engine_sends(service: CoordinationService, messages: list[Message]) -> float:
    start = time.perf_counter()
    for message in messages:
        await service.send_message(message)
    return time.perf_counter() - start


async def lone_sends(service: CoordinationService, messages: list[Message]) -> list[float]:
    latencies = []
    for message in messages:
        start = time.perf_counter()
        await service.send_message(message)
        latencies.append(time.perf_counter() - start)
    return latencies


async def woken_round_trips(
    service: CoordinationService, agents: list[Identity], thread_id: str, n: int
) -> list[float]:
    sender, listener = agents[0], agents[1]
    latencies = []
    for message in signed_messages([sender], thread_id, n):
        cursor = await service.inbox_cursor(listener.did)
        waiter = asyncio.create_task(service.wait(listener.did, after=cursor, timeout_ms=60_000))
        await asyncio.sleep(0)  # let the waiter block first
        start = time.perf_counter()
        await service.send_message(message)
        await waiter
        latencies.append(time.perf_counter() - start)
    return latencies


async def main(n: int) -> None:
    agents = [Identity.generate() for _ in range(4)]
    node = Identity.generate()
    with tempfile.TemporaryDirectory() as tmp:
        db = SqliteDatabase(Path(tmp) / "bench.db")
        await db.open()
        store = SqliteCoordinationStore(db)
        await store.migrate()
        service = CoordinationService(store, node_id=node.did, clock=now_ms)
        dids = [a.did for a in agents[1:]]
        broadcast = await service.create_thread(agents[0].did, "bench", dids)
        rr = await service.create_thread(agents[0].did, "rr", dids, strategy="round_robin")

        # Interleave the measures in blocks so drift on a shared machine hits all alike.
        await db.conn.execute("CREATE TABLE bare_log (seq INTEGER PRIMARY KEY, id TEXT, wire TEXT)")
        bare = engine = robin = 0.0
        quiet: list[float] = []
        woken: list[float] = []
        block = 48  # a multiple of the 4 round-robin speakers
        for _ in range(max(1, n // block)):
            bare += await bare_append(db, signed_messages(agents, broadcast.id, block))
            engine += await engine_sends(service, signed_messages(agents, broadcast.id, block))
            robin += await engine_sends(service, signed_messages(agents, rr.id, block))
            quiet += await lone_sends(service, signed_messages(agents[:1], broadcast.id, block))
            woken += await woken_round_trips(service, agents, broadcast.id, block)
        n = max(1, n // block) * block
        await db.close()

    print(f"messages per measure: {n}; thread of 4 agents (each message fans out to 3 inboxes)")
    print(f"bare durable append (baseline):      {n / bare:9.0f} msg/s")
    print(f"engine send_message, broadcast:      {n / engine:9.0f} msg/s  ({engine / bare:.2f}x)")
    print(f"engine send_message, round_robin:    {n / robin:9.0f} msg/s  ({robin / bare:.2f}x)")
    per_send = statistics.median(quiet)
    median_woken = statistics.median(woken)
    print(f"send with no waiter, median (base):  {per_send * 1e6:9.0f} us")
    print(
        f"send + blocked waiter woken, median: {median_woken * 1e6:9.0f} us"
        f"  ({median_woken / per_send:.2f}x)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=500)
    asyncio.run(main(parser.parse_args().n))
