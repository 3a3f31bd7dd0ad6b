"""Team traffic through a real node: encrypted team posts vs plain thread posts.

Run: python benchmarks/bench_team_node.py [--n 200] [--rounds 5]

Starts one coral-node process, forms a team of three with the SDK (timed),
then posts the same text alternately to an ordinary thread and (encrypted)
to the team thread, sequentially over HTTP. Prints the median per-post time
of each and their ratio, which is what the team admission check (certificate
and key epoch authorization) plus encryption costs per post.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _node import BenchNode

from coral.protocol.agent import AgentManifest
from coral.protocol.identity import Identity
from coral.teams import Money, RoleSpec
from coral_sdk import CoralClient
from coral_sdk.ledger import issue_dev_funds
from coral_sdk.teams import TeamClient, accept_invitations

TEXT = "status: draft section 3 is ready for review; numbers checked against the source. " * 3


async def run(url: str, n: int, rounds: int, admin_token: str) -> None:
    lead = CoralClient(url, Identity.generate())
    await lead.register(AgentManifest(name="bench-lead"))
    await issue_dev_funds(url, admin_token, lead.did, 10**12)  # team budgets are escrowed
    workers = []
    for name, cap in (("bench-writer", "write"), ("bench-reviewer", "review")):
        client = CoralClient(url, Identity.generate())
        await client.register(AgentManifest(name=name, capabilities=(cap,)))
        workers.append(client)
    stop = asyncio.Event()
    handlers = [
        asyncio.create_task(accept_invitations(w, lambda offer: 1, stop=stop)) for w in workers
    ]
    teams = TeamClient(lead)
    roles = (
        RoleSpec(name="writer", capabilities=("write",)),
        RoleSpec(name="reviewer", capabilities=("review",)),
    )
    started = time.perf_counter()
    team = await teams.form_team(goal="bench", roles=roles, budget=Money(amount=10), timeout_s=30)
    formation_s = time.perf_counter() - started
    plain = await lead.create_thread("plain", [w.did for w in workers])
    plain_times: list[float] = []
    team_times: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            await lead.send(plain.id, TEXT)
        plain_times.append((time.perf_counter() - t0) / n)
        t0 = time.perf_counter()
        for _ in range(n):
            await teams.send_team_message(team.team_id, TEXT)
        team_times.append((time.perf_counter() - t0) / n)
    stop.set()
    await asyncio.gather(*handlers)
    for client in (lead, *workers):
        await client.close()
    plain_ms = statistics.median(plain_times) * 1000
    team_ms = statistics.median(team_times) * 1000
    print(f"team formation (3 members, over HTTP, SDK long-poll): {formation_s * 1000:.0f} ms")
    print(f"plain thread post:      {plain_ms:.2f} ms/post (median of {rounds} rounds x {n})")
    print(f"encrypted team post:    {team_ms:.2f} ms/post")
    print(f"team / plain post cost: {team_ms / plain_ms:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with BenchNode() as node:
        token = (node.data_dir / "keys" / "admin.token").read_text().strip()
        asyncio.run(run(node.info["http_address"], args.n, args.rounds, token))


if __name__ == "__main__":
    main()
