"""Fixed held-out sets and training sets, disjoint by construction, for each task."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from coral_sdk.models.trm.config import TrainConfig
from coral_sdk.models.trm.tasks import Difficulty, Grids, PuzzleTask

#: The held-out set never depends on the training seed, so every run and every
#: checkpoint is scored on the same puzzles.
HELDOUT_SEED = 2510_04871


def difficulty_of(config: TrainConfig) -> Difficulty:
    """The generator difficulty a training config asks for."""
    return Difficulty(
        givens_min=config.givens_min,
        givens_max=config.givens_max,
        min_path=config.maze_min_path,
        wall_density=config.maze_wall_density,
        minimal=config.minimal,
    )


def heldout_set(task: PuzzleTask, difficulty: Difficulty, size: int) -> tuple[Grids, Grids]:
    """``size`` puzzles from the fixed held-out seed (same puzzles for the same arguments)."""
    return task.generate(size, np.random.default_rng(HELDOUT_SEED), difficulty)


def training_set(
    task: PuzzleTask,
    difficulty: Difficulty,
    size: int,
    seed: int,
    exclude: Grids | None = None,
) -> tuple[Grids, Grids]:
    """``size`` distinct puzzles whose inputs do not appear in ``exclude`` (the held-out set).

    Gives up (ValueError) when the space of puzzles is too small to find that many.
    """
    rng = np.random.default_rng(seed)
    seen = {puzzle.tobytes() for puzzle in exclude} if exclude is not None else set()
    puzzles: list[Grids] = []
    solutions: list[Grids] = []
    attempts = 0
    while len(puzzles) < size:
        attempts += 1
        if attempts > 20 * size + 1000:
            raise ValueError(f"could not find {size} distinct {task.name} training puzzles")
        batch_p, batch_s = task.generate(1, rng, difficulty)
        key = batch_p[0].tobytes()
        if key in seen:
            continue
        seen.add(key)
        puzzles.append(batch_p[0])
        solutions.append(batch_s[0])
    return np.stack(puzzles), np.stack(solutions)


def cached_sets(
    cache_dir: str | Path | None,
    task: PuzzleTask,
    difficulty: Difficulty,
    train_size: int,
    seed: int,
    eval_size: int,
    log: Callable[[str], None] | None = None,
) -> tuple[tuple[Grids, Grids], tuple[Grids, Grids]]:
    """(training set, held-out set), read from or written to ``cache_dir`` when given.

    The file name hashes everything that decides the puzzles, so two runs with
    the same data settings (TRM and its ablation) share one generated set.
    """
    key = f"{task.name}|{difficulty}|{train_size}|{seed}|{eval_size}|{HELDOUT_SEED}"
    name = f"{task.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"
    path = Path(cache_dir) / name if cache_dir else None
    if path is not None and path.is_file():
        with np.load(path) as saved:
            return (saved["train_p"], saved["train_s"]), (saved["eval_p"], saved["eval_s"])
    if log is not None:
        log(f"generating {eval_size} held-out and {train_size} training {task.name} puzzles")
    heldout = heldout_set(task, difficulty, eval_size)
    train = training_set(task, difficulty, train_size, seed, heldout[0])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp.npz")
        np.savez_compressed(
            partial, train_p=train[0], train_s=train[1], eval_p=heldout[0], eval_s=heldout[1]
        )
        partial.replace(path)
    return train, heldout
