"""Minimal-Sudoku generator throughput on one core: puzzles per second for 4x4, 6x6, 9x9.

    python scripts/sudoku_generator_rate.py [--seconds 10]

Each puzzle is a random full grid whose clues are removed in random order
while the solution stays unique, so the result is minimal (no clue can be
removed); the script re-checks uniqueness and minimality of the last puzzle.
"""

from __future__ import annotations

import argparse
import json
import time


def main(argv: list[str] | None = None) -> int:
    """Print puzzles/s and mean givens per size (JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="time per size")
    parser.add_argument("--sizes", default="4,6,9", help="comma-separated sizes")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import numpy as np

    from coral_sdk.models.trm.tasks import sudoku

    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        rng = np.random.default_rng(size)
        givens: list[int] = []
        started, cpu_started = time.perf_counter(), time.process_time()
        puzzle = None
        while time.perf_counter() - started < args.seconds or not givens:
            puzzle, _ = sudoku.generate_minimal(size, rng)
            givens.append(int((puzzle > 0).sum()))
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        assert puzzle is not None and sudoku.is_minimal(puzzle)
        rows.append(
            {
                "size": size,
                "puzzles": len(givens),
                "per_s_wall": round(len(givens) / wall, 2),
                # CPU time is what one core would take alone: the machine may be shared.
                "per_s_cpu": round(len(givens) / max(cpu, 1e-9), 2),
                "mean_givens": round(float(np.mean(givens)), 2),
            }
        )
    if args.json:
        print(json.dumps(rows))
    else:
        for row in rows:
            print(
                f"{row['size']}x{row['size']}: {row['per_s_cpu']} puzzles/s per core (CPU time), "
                f"{row['per_s_wall']}/s wall, mean {row['mean_givens']} givens"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
