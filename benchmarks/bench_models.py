"""TRM solves per second: one request at a time versus DynamicBatcher with concurrent clients.

Usage: python benchmarks/bench_models.py [--device cpu|cuda] [--requests 512] [--concurrency 64]
Both modes run in the same process on the same puzzles; the printed ratio is
batched throughput over sequential throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import torch

from coral_sdk.models.trm import SHIPPED_CHECKPOINT
from coral_sdk.models.trm.checkpoint import read_config
from coral_sdk.models.trm.data import difficulty_of, heldout_set
from coral_sdk.models.trm.solver import TrmSolver
from coral_sdk.runtime import DynamicBatcher, pick_device


def sequential(solver: TrmSolver, requests: list[dict[str, Any]]) -> float:
    """Solves per second calling the solver with a batch of one, request after request."""
    started = time.perf_counter()
    for request in requests:
        solver.solve(request)
    return len(requests) / (time.perf_counter() - started)


async def batched(
    solver: TrmSolver, requests: list[dict[str, Any]], concurrency: int, max_wait_ms: float
) -> tuple[float, float]:
    """Solves per second with ``concurrency`` clients sharing one DynamicBatcher."""
    pending = iter(requests)
    batcher: DynamicBatcher[dict[str, Any], dict[str, Any]] = DynamicBatcher(
        solver.solve_batch, max_batch_size=concurrency, max_wait_ms=max_wait_ms
    )

    async def client() -> None:
        for request in pending:  # clients pull from one shared iterator
            await batcher.submit(request)

    async with batcher:
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return len(requests) / elapsed, batcher.stats().mean_batch_size


def main() -> None:
    """Run both modes and print throughput and the speed-up ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(SHIPPED_CHECKPOINT))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    device = pick_device(args.device)
    solver = TrmSolver.from_checkpoint(args.checkpoint, device=device)
    train = read_config(args.checkpoint).train
    puzzles, _ = heldout_set(solver.task, difficulty_of(train), min(train.eval_size, 1000))
    grids = itertools.islice(itertools.cycle(puzzles), args.requests)
    requests = [{"task": solver.task.name, "grid": grid.tolist()} for grid in grids]

    solver.solve_batch(requests[: args.concurrency])  # warm-up (allocations, CUDA kernels)
    seq_rate = sequential(solver, requests)
    batch_rate, mean_batch = asyncio.run(
        batched(solver, requests, args.concurrency, args.max_wait_ms)
    )
    shown = Path(args.checkpoint)
    try:  # print repo-relative paths: results get committed
        shown = shown.resolve().relative_to(Path(__file__).resolve().parent.parent)
    except ValueError:
        pass
    print(f"device {device}, checkpoint {shown}, {args.requests} requests")
    print(f"sequential (batch 1):              {seq_rate:9.1f} solves/s")
    print(
        f"DynamicBatcher ({args.concurrency} concurrent):     {batch_rate:9.1f} solves/s"
        f"  (mean batch {mean_batch:.1f})"
    )
    print(f"ratio batched / sequential:        {batch_rate / seq_rate:9.2f}x")


if __name__ == "__main__":
    main()
