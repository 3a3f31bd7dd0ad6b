"""TRM agent through a real node: dynamic batching vs one puzzle per forward.

Both runs use the same node, agent class, checkpoint and burst of concurrent
puzzles (each a signed message in its own thread, answered by a mention);
only ``max_batch_size`` differs (1 = the unbatched baseline). Prints requests/s
and the ratio, plus the batch sizes the batcher formed.

    python benchmarks/bench_model_agents.py --requests 96
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _node import BenchNode

from coral.protocol.identity import Identity
from coral_sdk import AgentManifest, CoralClient
from coral_sdk.agents.trm_agent import TrmAgent


def puzzles(count: int) -> list[dict[str, Any]]:
    from coral_sdk.models.trm.tasks import sudoku

    rng = np.random.default_rng(0)
    return [
        {"task": "sudoku4", "grid": sudoku.generate_puzzle(4, 6, rng)[0].tolist()}
        for _ in range(count)
    ]


async def run(node_url: str, batch: int, requests: list[dict[str, Any]]) -> tuple[float, Any]:
    with tempfile.TemporaryDirectory() as keys:
        agent = TrmAgent(
            node_url,
            key_file=Path(keys) / "trm.key",
            manifest=AgentManifest(name=f"trm-b{batch}"),
            options={"device": "cpu", "max_batch_size": batch, "max_wait_ms": 5},
        )
        runner = asyncio.create_task(agent.run())
        user = CoralClient(node_url, Identity.generate())
        await user.register(AgentManifest(name=f"user-b{batch}"))
        while agent.record is None:  # noqa: ASYNC110 - run() sets it; no event to await
            await asyncio.sleep(0.05)
        thread = await user.create_thread("bench", [agent.did])
        await user.send(thread.id, data=requests[0], mentions=[agent.did])  # warm-up load
        cursor = (await user.wait("mention", timeout_ms=60_000)).cursor
        started = time.perf_counter()
        await asyncio.gather(
            *(user.send(thread.id, data=r, mentions=[agent.did]) for r in requests)
        )
        got = 0
        while got < len(requests):
            page = await user.wait("mention", after=cursor, timeout_ms=60_000)
            got += len(page.entries)
            cursor = page.cursor
        elapsed = time.perf_counter() - started
        stats = agent.batcher.stats()
        agent.stop()
        await runner
        await user.close()
        return len(requests) / elapsed, stats


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=96)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    burst = puzzles(args.requests)
    with BenchNode() as node:
        url = node.info["http_address"]
        baseline, base_stats = await run(url, 1, burst)
        batched, stats = await run(url, 64, burst)
    print(f"requests: {args.requests} concurrent puzzles (torch threads: 1)")
    print(f"unbatched (max_batch_size=1): {baseline:.1f} req/s, {base_stats.batches} batches")
    print(
        f"batched (max_batch_size=64): {batched:.1f} req/s, {stats.batches} batches, "
        f"mean batch {stats.mean_batch_size:.1f}"
    )
    print(f"ratio batched/unbatched: {batched / baseline:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
