"""Subprocess for the crash test: hammer a SQLite ledger, print each acknowledged id.

Usage: python ledger_crash_worker.py DB_PATH. Prints ``READY`` once accounts
are funded, then ``ACK <transfer id>`` after each commit returns, until it
is killed. The parent SIGKILLs it mid-burst and checks the file.
"""

from __future__ import annotations

import asyncio
import random
import sys

from coral.ledger import Account, AccountFlags, AccountKind, Transfer, TransferFlags
from coral.store.ledger_sqlite import SqliteLedgerStore

AGENTS = [f"agent{i}" for i in range(8)]


async def hammer(store: SqliteLedgerStore, worker: int) -> None:
    rng = random.Random(worker)
    step = 0
    while True:
        step += 1
        debit, credit = rng.sample(AGENTS, 2)
        tid = f"w{worker}-{step}"
        if step % 5 == 0:  # a reservation and its settlement in one linked chain
            batch = [
                Transfer(tid, debit, credit, 3, flags=TransferFlags.PENDING | TransferFlags.LINKED),
                Transfer(f"{tid}-post", pending_id=tid, amount=2, flags=TransferFlags.POST_PENDING),
            ]
        else:
            batch = [Transfer(tid, debit, credit, rng.randint(1, 9))]
        results = await store.create_transfers(batch, now_ms=step)
        for result in results:
            if result.ok:
                print(f"ACK {result.id}", flush=True)


async def main(path: str) -> None:
    store = await SqliteLedgerStore.open(path)
    accounts = [Account("op", "usd", kind=AccountKind.OPERATOR)]
    accounts += [
        Account(a, "usd", flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS) for a in AGENTS
    ]
    await store.create_accounts(accounts, 0)
    await store.create_transfers([Transfer(f"fund-{a}", "op", a, 10**6) for a in AGENTS], 0)
    print("READY", flush=True)
    await asyncio.gather(*(hammer(store, w) for w in range(16)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
