"""Cost of one dashboard snapshot as the node's coordination history grows.

The feed rebuilds the snapshot at most twice a second while a browser watches,
so its build time is the dashboard's steady CPU cost. This fills real
coordination tables (through the store's schema, rows written in bulk) at
several sizes and times ``SnapshotBuilder.build``; the baseline is the smallest
size, measured in the same run.

    python benchmarks/bench_dashboard.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from coral.api.context import NodeContext
from coral.api.dashboard.rates import RateSampler
from coral.api.dashboard.snapshot import SnapshotBuilder
from coral.config import Config
from coral.metrics import NodeMetrics
from coral.protocol.identity import Identity
from coral.protocol.limits import Limits
from coral.protocol.verify import MessageVerifier
from coral.store.coordination_sqlite import SqliteCoordinationStore
from coral.store.dashboard_sqlite import SqliteDashboardReads
from coral.store.sqlite import SqliteDatabase

SIZES = [(10, 10), (200, 50), (1000, 100)]  # (threads, entries per thread)
START_MS = 1_770_000_000_000


async def fill(db: SqliteDatabase, threads: int, entries: int) -> None:
    """Insert ``threads`` threads of ``entries`` text messages each, in one transaction."""
    agents = [Identity.from_seed(bytes([i + 1]) * 32).did for i in range(2)]
    thread_rows, entry_rows = [], []
    for t in range(threads):
        tid = f"t{t:06d}"
        thread_rows.append(
            (
                tid,
                None,
                f"thread {t}",
                agents[0],
                json.dumps(agents),
                "open",
                None,
                "broadcast",
                "{}",
                "{}",
                START_MS + t,
                None,
                entries,
                None,
            )
        )
        for seq in range(1, entries + 1):
            wire = {
                "id": f"m{t:06d}{seq:05d}",
                "kind": "message",
                "sender": agents[seq % 2],
                "thread": tid,
                "created_at": START_MS + t * 1000 + seq,
                "parts": [{"type": "text", "text": f"message {seq} in thread {t} " * 3}],
                "signature": "A" * 86,
            }
            entry_rows.append(
                (
                    tid,
                    seq,
                    wire["id"],
                    wire["sender"],
                    "[]",
                    0,
                    wire["created_at"],
                    json.dumps(wire),
                )
            )
    async with db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO coordination_threads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            thread_rows,
        )
        await conn.executemany(
            "INSERT INTO coordination_entries (thread_id, seq, message_id, sender, mentions,"
            " system, recorded_at, wire) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            entry_rows,
        )


async def measure(threads: int, entries: int, repeats: int) -> tuple[float, int]:
    """Median build time in ms and the snapshot's JSON size in bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        db = SqliteDatabase(Path(tmp) / "coral.db")
        await db.open()
        await SqliteCoordinationStore(db).migrate()
        await fill(db, threads, entries)
        metrics = NodeMetrics()
        ctx = NodeContext(
            config=Config(data_dir=Path(tmp)),
            identity=Identity.generate(),
            metrics=metrics,
            verifier=MessageVerifier(Limits()),
            admin_token="bench",
            started_at=START_MS,
        )
        reads = SqliteDashboardReads(db, Path(tmp) / "ledger.db")
        builder = SnapshotBuilder(ctx, reads, RateSampler(metrics.registry, time.monotonic))
        snapshot = await builder.build()  # warm the page cache
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            snapshot = await builder.build()
            times.append((time.perf_counter() - started) * 1000)
        await reads.close()
        await db.close()
        return statistics.median(times), len(json.dumps(snapshot))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print("| threads x entries | stored messages | snapshot build (median) | JSON | vs smallest |")
    print("|---|---|---|---|---|")
    baseline = None
    for threads, entries in SIZES:
        ms, size = await measure(threads, entries, args.repeats)
        baseline = baseline or ms
        print(
            f"| {threads} x {entries} | {threads * entries:,} | {ms:.1f} ms | {size / 1024:.0f} KiB"
            f" | {ms / baseline:.2f}x |"
        )
    print("\nAt the feed's ceiling of 2 builds/s, CPU share = 2 x build time per second.")


if __name__ == "__main__":
    asyncio.run(main())
