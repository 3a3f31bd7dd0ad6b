"""Soak a three-node network for a bounded time: memory must stay flat, nothing may leak.

Run: python benchmarks/soak.py [--minutes 10] [--sample-seconds 10]

Not part of the test suite or of run_all.py (it runs for minutes by design).
Three node processes (b and c bootstrap from a) with agents on each; in a
loop until time is up: every agent posts to one cross-node thread and the
others drain their inboxes, payers pay payees on their own node, a team
charter is proposed, and a short-lived agent registers and deregisters.
Every ``--sample-seconds`` each node's VmRSS and open file descriptors are
read from /proc. The report gives per node the RSS slope over the second
half of the run (after warm-up) in MiB per minute and the fd growth; the exit
code is 1 when a slope or the fd growth passes its threshold.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._node import BenchNode
from benchmarks.bench_load import rss_bytes
from coral.protocol.identity import Identity
from coral.protocol.message import now_ms
from coral.teams import Money, RoleSpec, draft_charter
from coral.teams.documents import document_json
from coral_sdk import AgentManifest, CoralApiError, CoralClient
from coral_sdk.ledger import LedgerClient


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) samples, in value per minute."""
    if len(samples) < 2:
        return 0.0
    xs, ys = [s[0] for s in samples], [s[1] for s in samples]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return 60 * sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var


@dataclass
class Samples:
    """RSS (MiB) and open fds of one node over time."""

    name: str
    pid: int
    rss: list[tuple[float, float]] = field(default_factory=list)
    fds: list[tuple[float, float]] = field(default_factory=list)

    def take(self, elapsed: float) -> None:
        self.rss.append((elapsed, rss_bytes(self.pid) / 2**20))
        self.fds.append((elapsed, float(open_fds(self.pid))))


async def fund(session: aiohttp.ClientSession, node: BenchNode, account: str, amount: int) -> None:
    token = (node.data_dir / "keys" / "admin.token").read_text().strip()
    async with session.post(
        node.info["http_address"] + "/v1/admin/ledger/issue",
        json={"account": account, "amount": amount},
        headers={"Authorization": f"Bearer {token}"},
    ) as resp:
        assert resp.status < 300, await resp.text()


async def wait_for_directory(client: CoralClient, dids: set[str]) -> None:
    """Return once every node's agents are listed (callers bound it with asyncio.timeout)."""
    while True:
        if dids <= {r.agent for r in await client.list_agents(all_nodes=True)}:
            return
        await asyncio.sleep(0.5)


async def thread_visible(client: CoralClient, thread: str) -> None:
    """Return once the client's own node serves the (possibly remote) thread."""
    while True:
        try:
            await client.thread(thread)
            return
        except CoralApiError:
            await asyncio.sleep(0.5)


WORKLOADS = ("messages", "payments", "teams", "churn")


async def propose_team(session: aiohttp.ClientSession, owner: CoralClient, round_no: int) -> None:
    charter = draft_charter(
        owner.identity,
        goal=f"soak {round_no}",
        roles=(RoleSpec(name="writer", capabilities=("chat",)),),
        budget=Money(amount=1),
        deadline_ms=now_ms() + 60_000,
        now_ms=now_ms(),
    )
    headers = {"Content-Type": "application/json"}
    url = owner.base_url + "/v1/teams"
    async with session.post(url, data=document_json(charter), headers=headers) as resp:
        if resp.status != 201:
            raise CoralApiError(resp.status, "team_refused", await resp.text())


async def churn_agent(owner: CoralClient, round_no: int) -> None:
    """A short-lived agent: register, then deregister (leaves a tombstone)."""
    churn = CoralClient(owner.base_url, Identity.generate())
    manifest = AgentManifest(name=f"churn-{round_no % 1000}")
    try:
        await churn.register(manifest)
        await churn.deregister(manifest)
    finally:
        await churn.close()


async def workload_round(
    kinds: set[str],
    session: aiohttp.ClientSession,
    clients: list[CoralClient],
    cursors: dict[str, int],
    thread: str,
    round_no: int,
) -> None:
    """One round of every chosen workload."""
    if "messages" in kinds:
        for client in clients:
            await client.send(thread, f"round {round_no} from {client.did[-6:]}")
        for client in clients:
            page = await client.wait("message", after=cursors[client.did], timeout_ms=2_000)
            cursors[client.did] = page.cursor
    if "payments" in kinds:  # payer -> payee on the same node
        for payer, payee in zip(clients[0::2], clients[1::2], strict=False):
            await LedgerClient(payer).transfer(to=payee.did, amount=1, memo=f"soak {round_no}")
    owner = clients[round_no % len(clients)]
    if "teams" in kinds:
        await propose_team(session, owner, round_no)
    if "churn" in kinds:
        await churn_agent(owner, round_no)


async def soak(minutes: float, sample_seconds: float, kinds: set[str]) -> list[Samples]:
    os.environ.setdefault("CORAL_GOSSIP_INTERVAL_S", "1.0")
    with BenchNode() as a:
        bootstrap = ("--bootstrap", a.info["grpc_address"])
        with BenchNode(*bootstrap) as b, BenchNode(*bootstrap) as c:
            nodes = {"a": a, "b": b, "c": c}
            samples = [Samples(name, n.proc.pid) for name, n in nodes.items() if n.proc]
            clients: list[CoralClient] = []
            for name, node in nodes.items():
                for i in range(2):
                    client = CoralClient(node.info["http_address"], Identity.generate())
                    await client.register(
                        AgentManifest(name=f"soak-{name}-{i}", capabilities=("chat",))
                    )
                    clients.append(client)
            async with aiohttp.ClientSession() as session:
                for client, node in zip(clients, [a, a, b, b, c, c], strict=True):
                    await fund(session, node, client.did, 10**9)
                async with asyncio.timeout(60):
                    await wait_for_directory(clients[0], {c.did for c in clients})
                thread = (await clients[0].create_thread("soak", [c.did for c in clients])).id
                async with asyncio.timeout(60):
                    for client in clients:
                        await thread_visible(client, thread)
                cursors = {c.did: 0 for c in clients}
                started = time.monotonic()
                next_sample = 0.0
                round_no = 0
                errors: list[str] = []
                while (elapsed := time.monotonic() - started) < minutes * 60:
                    if elapsed >= next_sample:
                        for s in samples:
                            s.take(elapsed)
                        next_sample += sample_seconds
                    try:
                        await workload_round(kinds, session, clients, cursors, thread, round_no)
                    except CoralApiError as exc:
                        # Count, keep going: a soak reports errors rather than stopping.
                        errors.append(f"round {round_no}: {exc}")
                    round_no += 1
                for s in samples:
                    s.take(time.monotonic() - started)
            for client in clients:
                await client.close()
    print(f"rounds completed: {round_no} in {minutes:g} min; failed rounds: {len(errors)}")
    for error in errors[:5]:
        print("  ", error)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--max-rss-slope", type=float, default=1.0, help="MiB per minute")
    parser.add_argument("--max-fd-growth", type=int, default=10)
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)} (to find what grows)",
    )
    args = parser.parse_args()
    kinds = set(args.workloads.split(","))
    if not kinds <= set(WORKLOADS):
        parser.error(f"--workloads takes {', '.join(WORKLOADS)}")
    samples = asyncio.run(soak(args.minutes, args.sample_seconds, kinds))
    ok = True
    print("| node | RSS start -> end (MiB) | RSS slope, 2nd half (MiB/min) | fds start -> end |")
    print("|---|---|---|---|")
    for s in samples:
        half = [p for p in s.rss if p[0] >= s.rss[-1][0] / 2]
        slope = slope_per_minute(half)
        fd_growth = s.fds[-1][1] - s.fds[0][1]
        print(
            f"| {s.name} | {s.rss[0][1]:.1f} -> {s.rss[-1][1]:.1f} | {slope:+.2f} "
            f"| {s.fds[0][1]:.0f} -> {s.fds[-1][1]:.0f} |"
        )
        ok = ok and slope <= args.max_rss_slope and fd_growth <= args.max_fd_growth
    print("verdict:", "flat, no fd leak" if ok else "GROWTH above threshold")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
