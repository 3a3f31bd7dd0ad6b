"""What the node's API costs on top of the ledger: signed HTTP transfers vs in-process.

Run: python benchmarks/bench_ledger_api.py [--n 600] [--concurrency 16]

In one run it measures, on SQLite files with synchronous=FULL and group commit:
  * baseline: ``LedgerService.transfer`` called in-process by ``concurrency``
    concurrent submitters (the ledger alone, no network, no authentication);
  * API: the same number of transfers through a real node process over HTTP,
    each request signed by its agent and authorized (owner check, account
    lookups) by the node, from ``concurrency`` concurrent SDK clients.
Only the in-run ratio is meaningful on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from coral.ledger import LedgerService
from coral.protocol.agent import AgentManifest
from coral.protocol.identity import Identity
from coral.protocol.message import now_ms
from coral.store.ledger_sqlite import SqliteLedgerStore
from coral_sdk import CoralClient
from coral_sdk.ledger import LedgerClient


async def in_process(n: int, concurrency: int, path: Path) -> float:
    """Transfers per second straight into LedgerService."""
    store = await SqliteLedgerStore.open(path)
    ledger = LedgerService(store, Identity.generate(), now_ms)
    payers = [f"payer{i}" for i in range(concurrency)]
    for payer in [*payers, "payee"]:
        await ledger.open_account(payer, owner=payer)
    for payer in payers:
        await ledger.issue(payer, n)

    async def worker(payer: str) -> None:
        for k in range(n // concurrency):
            await ledger.transfer(payer, "payee", 1, transfer_id=f"{payer}-{k}")

    started = time.perf_counter()
    await asyncio.gather(*(worker(p) for p in payers))
    elapsed = time.perf_counter() - started
    await store.close()
    return (n // concurrency) * concurrency / elapsed


def start_node(data_dir: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """A real node process on free ports; returns it and its runtime info."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "coral",
            "start",
            "--data-dir",
            str(data_dir),
            "--grpc-port",
            "0",
            "--http-port",
            "0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runtime = data_dir / "node.json"
    for _ in range(600):
        try:
            info = json.loads(runtime.read_text())
            if info.get("pid") == proc.pid:
                return proc, info
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.05)
    proc.kill()
    raise TimeoutError("node did not start")


async def over_http(n: int, concurrency: int, data_dir: Path) -> float:
    """Transfers per second through a node's signed HTTP API."""
    proc, info = start_node(data_dir)
    token = (data_dir / "keys" / "admin.token").read_text().strip()
    clients = [CoralClient(info["http_address"], Identity.generate()) for _ in range(concurrency)]
    payee = CoralClient(info["http_address"], Identity.generate())
    try:
        for client in [*clients, payee]:
            await client.register(AgentManifest(name="bench"))
        for client in clients:
            request = urllib.request.Request(
                info["http_address"] + "/v1/admin/ledger/issue",
                data=json.dumps({"account": client.did, "amount": n}).encode(),
                headers={"Authorization": f"Bearer {token}"},
                method="POST",
            )
            await asyncio.to_thread(lambda r=request: urllib.request.urlopen(r, timeout=30).read())
        await LedgerClient(payee).balance()

        async def worker(index: int, client: CoralClient) -> None:
            ledger = LedgerClient(client)
            for k in range(n // concurrency):
                await ledger.transfer(to=payee.did, amount=1, transfer_id=f"w{index}-{k}")

        started = time.perf_counter()
        await asyncio.gather(*(worker(i, c) for i, c in enumerate(clients)))
        elapsed = time.perf_counter() - started
    finally:
        for client in [*clients, payee]:
            await client.close()
        proc.terminate()
        proc.wait(30)
    return (n // concurrency) * concurrency / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = await in_process(args.n, args.concurrency, Path(tmp) / "ledger.db")
        api = await over_http(args.n, args.concurrency, Path(tmp) / "node")
    print(f"transfers: {args.n}, concurrent submitters: {args.concurrency}, cpus: {os.cpu_count()}")
    print(f"in-process LedgerService (baseline): {base:8.0f} transfers/s")
    print(f"signed HTTP API via node process:   {api:8.0f} transfers/s")
    print(f"API / in-process: {api / base:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
