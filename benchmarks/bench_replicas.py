"""Routed signed messages/s and CPU per message: SQLite node, one and two PostgreSQL replicas.

Run: python benchmarks/bench_replicas.py [--pairs 20] [--messages 6000] [--rounds 5]
     python benchmarks/bench_replicas.py --quick      (a couple of minutes)

Three setups run side by side in one run, each a real node process (or two)
driven only through its public gRPC API, with bench_routing.py's client: P
sender/receiver pairs share a thread each, every receiver holds a
``Subscribe`` stream, every sender makes unary ``Submit`` calls in turn.

- (a) ``sqlite``: one node on its embedded SQLite file (the default);
- (b) ``pg-1``: one node with ``database_stores = "all"`` on PostgreSQL;
- (c) ``pg-2``: two replicas sharing one node key and one PostgreSQL database;
  senders are registered and submit through replica 1, receivers register and
  subscribe through replica 2, so every message crosses through the database
  (commit on 1, ``NOTIFY``, inbox read on 2).

(b) and (c) use separate databases on one throwaway PostgreSQL server
(``tests/support/throwaway_postgres.py``, durable: fsync on). Blocks are
interleaved (a, b, c, then b, c, a, ...) so drift on a shared machine hits
every setup alike; rates and ratios against (a) are medians over rounds, with
the spread. CPU per message is the user+system time, over the block, of the
node process(es) and, separately, of the PostgreSQL server's processes,
divided by the messages routed. The client signs every message before a block
starts.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import asyncpg
import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._node import BenchNode
from benchmarks._stats import cpu_seconds, pct, ratio
from benchmarks.bench_routing import Pairs, make_pairs, node_id_of, until_waiting, waits_open
from coral.node.eventloop import run
from coral.v1 import coordination_pb2_grpc


def load_throwaway_postgres() -> ModuleType:
    """Import the test suite's throwaway-server helper by path (benchmarks are not a package)."""
    path = Path(__file__).resolve().parents[1] / "tests" / "support" / "throwaway_postgres.py"
    spec = importlib.util.spec_from_file_location("throwaway_postgres", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def process_tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and its direct children now (PostgreSQL: postmaster + backends).

    A backend that exits between two readings takes its time with it; the nodes'
    pools keep theirs open, so within a block that loss is small.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(entry) == root or int(fields[1]) == root:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


class SplitPairs(Pairs):
    """Pairs whose receivers subscribe through another replica than the senders submit to."""

    def __init__(self, group: Pairs, subscribe_via: coordination_pb2_grpc.CoordinationServiceStub):
        super().__init__(group.coord, group.senders, group.receivers, group.threads)
        self.subscribe_via = subscribe_via

    async def subscribe(self) -> None:
        submit_via = self.coord
        self.coord = self.subscribe_via  # Pairs.subscribe opens its streams on self.coord
        try:
            await super().subscribe()
        finally:
            self.coord = submit_via


@dataclass
class Setup:
    """One subject: its node processes, its pairs, and per-round figures."""

    name: str
    nodes: list[BenchNode]
    group: Pairs | None = None
    rates: list[float] = field(default_factory=list)
    node_cpu: list[float] = field(default_factory=list)
    db_cpu: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [n.proc.pid for n in self.nodes if n.proc is not None]

    def grpc(self, i: int) -> str:
        return str(self.nodes[i].info["grpc_address"])

    def http(self, i: int) -> str:
        return str(self.nodes[i].info["http_address"])


async def prepare(setup: Setup, channels: list[grpc.aio.Channel], pairs: int) -> None:
    """Register the pairs (split across replicas when there are two) and open the streams."""
    node_id = await node_id_of(setup.grpc(0))
    if len(setup.nodes) > 1:
        assert await node_id_of(setup.grpc(1)) == node_id, "replicas must share the node key"
    group = await make_pairs(channels[0], node_id, pairs, setup.name.replace("-", ""))
    if len(channels) > 1:
        group = SplitPairs(group, coordination_pb2_grpc.CoordinationServiceStub(channels[1]))
    waiting_on = setup.http(len(setup.nodes) - 1)
    base = await asyncio.to_thread(waits_open, waiting_on)
    await group.subscribe()
    await until_waiting(waiting_on, int(base) + pairs)
    setup.group = group
    await group.block(1, None)  # warm-up: connections, caches, code paths


async def measure(setup: Setup, per_pair: int, db_cpu: Callable[[], float]) -> None:
    assert setup.group is not None
    node0 = sum(cpu_seconds(pid) for pid in setup.pids)
    db0 = db_cpu()
    block = await setup.group.block(per_pair, None)
    messages = len(setup.group.senders) * per_pair
    setup.rates.append(block.rate)
    setup.node_cpu.append((sum(cpu_seconds(pid) for pid in setup.pids) - node0) * 1000 / messages)
    setup.db_cpu.append((db_cpu() - db0) * 1000 / messages)
    setup.latencies += block.latencies


async def fresh_database(dsn: str, name: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return dsn.rsplit("/", 1)[0] + "/" + name


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--messages", type=int, default=6000, help="timed messages per setup")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved blocks per setup")
    parser.add_argument("--quick", action="store_true", help="20 pairs, 2000 messages, 5 rounds")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.messages, args.rounds = 20, 2000, 5
    per_pair = max(1, args.messages // (args.pairs * args.rounds))

    helper = load_throwaway_postgres()
    if helper.find_postgres_bin() is None:
        print("skipped: no PostgreSQL server binaries (initdb, postgres) on this machine")
        return
    server = helper.ThrowawayPostgres(durable=True)
    server.start()
    try:
        postmaster = server._process.pid  # setpriv execs, so this is postgres itself

        def db_cpu() -> float:
            return process_tree_cpu(postmaster)

        dsn_one = await fresh_database(server.dsn, "bench_one")
        dsn_two = await fresh_database(server.dsn, "bench_two")
        on_pg = {"CORAL_DATABASE_STORES": "all"}
        with ExitStack() as stack:
            sqlite = Setup("sqlite", [stack.enter_context(BenchNode())])
            one = Setup(
                "pg-1",
                [stack.enter_context(BenchNode(env={**on_pg, "CORAL_DATABASE_URL": dsn_one}))],
            )
            first = stack.enter_context(BenchNode(env={**on_pg, "CORAL_DATABASE_URL": dsn_two}))
            second = stack.enter_context(
                BenchNode(
                    env={**on_pg, "CORAL_DATABASE_URL": dsn_two}, keys_from=first.data_dir / "keys"
                )
            )
            two = Setup("pg-2", [first, second])
            setups = [sqlite, one, two]
            channels = {
                s.name: [grpc.aio.insecure_channel(s.grpc(i)) for i in range(len(s.nodes))]
                for s in setups
            }
            try:
                for s in setups:
                    await prepare(s, channels[s.name], args.pairs)
                started = time.perf_counter()
                for r in range(args.rounds):
                    for s in setups[r % 3 :] + setups[: r % 3]:
                        await measure(s, per_pair, db_cpu)
                elapsed = time.perf_counter() - started
                for s in setups:
                    assert s.group is not None
                    await s.group.close()
            finally:
                for chans in channels.values():
                    for channel in chans:
                        await channel.close()
        report(setups, args.pairs, per_pair, args.rounds, elapsed)
    finally:
        server.stop()


def report(setups: list[Setup], pairs: int, per_pair: int, rounds: int, elapsed: float) -> None:
    base = setups[0]
    cores = os.cpu_count() or 1
    print(
        f"{pairs} pairs, {pairs * per_pair} messages per block, {rounds} interleaved rounds,"
        f" {elapsed:.0f} s timed; {cores} CPU cores; PostgreSQL durable (fsync on)"
    )
    print(
        f"{'setup':<7} {'routed/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'node cpu ms/msg':>15}"
        f" {'db cpu ms/msg':>13} {'total':>6} | vs sqlite"
    )
    for s in setups:
        node = statistics.median(s.node_cpu)
        db = statistics.median(s.db_cpu)
        vs = "1.00x (baseline)" if s is base else str(ratio(s.rates, base.rates))
        print(
            f"{s.name:<7} {statistics.median(s.rates):>9.0f} {pct(s.latencies, 0.5) * 1000:>7.1f}"
            f" {pct(s.latencies, 0.99) * 1000:>7.1f} {node:>15.3f} {db:>13.3f}"
            f" {node + db:>6.3f} | {vs}"
        )
    # What more cores allow. One node is one event loop: it saturates one core at
    # 1000 / (node cpu ms) messages/s whatever the machine. With replicas, a message costs
    # the (c) node figure in all, split between the sender's and the receiver's replica, so
    # N replicas on N cores route up to N x 1000 / that figure, until PostgreSQL (the db
    # figure per message, on its own cores) becomes the bound.
    node_a = statistics.median(base.node_cpu)
    node_b = statistics.median(setups[1].node_cpu)
    node_c = statistics.median(setups[2].node_cpu)
    db_c = statistics.median(setups[2].db_cpu)
    print(
        f"prediction, more cores: one process saturates near {1000 / node_a:.0f} msg/s on SQLite,"
        f" {1000 / node_b:.0f} msg/s on PostgreSQL (1000 / node cpu ms); N replicas on N"
        f" cores near N x {1000 / node_c:.0f} msg/s while PostgreSQL has cores to spare: it needs"
        f" {db_c:.3f} ms per message, one core per {1000 / max(db_c, 1e-9):.0f} msg/s"
    )


if __name__ == "__main__":
    run(main())
