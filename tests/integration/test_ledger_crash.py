"""SIGKILL a node while clients burst payments at it: nothing acknowledged is lost.

Several agents pay each other concurrently over HTTP; the node is killed
mid-burst. Every transfer whose HTTP 2xx reached its client must be in the
ledger file afterwards, the ledger must satisfy every double-entry invariant
(debits == credits, balances == transfers, limits), and after a restart the
API serves the same balances.
"""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp

from coral.ledger import find_violations
from coral.store.ledger_sqlite import SqliteLedgerStore
from coral_sdk import CoralClient
from coral_sdk.ledger import LedgerClient
from tests.integration.test_ledger_node import agents, balance_of, issue

WORKERS = 4
FUNDS = 100_000


async def burst(client: CoralClient, payees: list[str], acked: list[str], tag: str) -> None:
    """Pay random payees until the node stops answering; record each acknowledged id."""
    ledger = LedgerClient(client)
    rng = random.Random(tag)
    for n in range(100_000):
        transfer_id = f"{tag}-{n}"
        try:
            await ledger.transfer(
                to=rng.choice(payees), amount=rng.randint(1, 9), transfer_id=transfer_id
            )
        except (TimeoutError, aiohttp.ClientError, ConnectionError):
            return
        acked.append(transfer_id)


async def test_sigkill_mid_burst_loses_no_acknowledged_transfer(node_factory):
    node = node_factory("node")
    clients = await agents(node, *(f"agent{i}" for i in range(WORKERS)))
    try:
        for client in clients:
            await issue(client, node, client.did, FUNDS)
        dids = [c.did for c in clients]
        acked: list[str] = []
        tasks = [
            asyncio.create_task(burst(c, [d for d in dids if d != c.did], acked, f"w{i}"))
            for i, c in enumerate(clients)
        ]
        # Let the burst get going, then crash the node under load.
        deadline = time.monotonic() + 60
        while len(acked) < 150 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(random.uniform(0.0, 0.3))
        node.kill()
        await asyncio.gather(*tasks)
    finally:
        for client in clients:
            await client.close()
    assert len(acked) >= 150

    store = await SqliteLedgerStore.open(node.data_dir / "ledger.db")
    try:
        state = await store.load_snapshot()
    finally:
        await store.close()
    missing = [t for t in acked if t not in state.transfers]
    assert missing == []
    assert find_violations(state) == []
    balances = {d: state.accounts[d].balance for d in dids}
    assert sum(balances.values()) == WORKERS * FUNDS

    node.start()
    for client in clients:
        fresh = CoralClient(node.http, client.identity)
        try:
            assert await balance_of(fresh) == balances[client.did]
        finally:
            await fresh.close()
