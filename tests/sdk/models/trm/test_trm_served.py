"""The served path thinks until it is sure: steps until verified, continuous batching.

Uses the shipped checkpoint on a small held-out slice; accuracy is compared
with the same model's as-trained evaluation (all N_sup steps), not with a
hard-coded number.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from coral_sdk.models.trm import SHIPPED_CHECKPOINT
from coral_sdk.models.trm.checkpoint import load_model
from coral_sdk.models.trm.data import difficulty_of, heldout_set
from coral_sdk.models.trm.evaluation import predict_grids, served_metrics
from coral_sdk.models.trm.solver import SupervisionBatch, TrmSolver, verify_answer
from coral_sdk.models.trm.tasks import Grids, get_task, sudoku
from coral_sdk.runtime import ContinuousBatcher

SLICE = 96


@pytest.fixture(scope="module")
def solver() -> TrmSolver:
    return TrmSolver.from_checkpoint(SHIPPED_CHECKPOINT, device="cpu", max_batch=16)


@pytest.fixture(scope="module")
def heldout(solver: TrmSolver) -> tuple[Grids, Grids]:
    _, config = load_model(SHIPPED_CHECKPOINT)
    puzzles, solutions = heldout_set(solver.task, difficulty_of(config.train), SLICE)
    return puzzles, solutions


def _requests(solver: TrmSolver, puzzles: Grids) -> list[dict[str, Any]]:
    return [{"task": solver.task.name, "grid": grid.tolist()} for grid in puzzles]


def test_served_accuracy_is_at_least_as_trained_and_verified_answers_are_right(
    solver: TrmSolver, heldout: tuple[Grids, Grids]
) -> None:
    puzzles, solutions = heldout
    predicted, _, _ = predict_grids(solver.model, solver.task, puzzles)
    as_trained = float(np.all(predicted == solutions, axis=(1, 2)).mean())
    responses = solver.solve_batch(_requests(solver, puzzles))
    answers = np.array([r["solution"] for r in responses])
    correct = np.all(answers == solutions, axis=(1, 2))
    verified = np.array([r["verified"] for r in responses])
    # A verified answer is a valid solution of the puzzle, which is unique: always right.
    assert np.all(correct[verified])
    for puzzle, response in zip(puzzles, responses, strict=True):
        answer = np.array(response["solution"])
        assert response["verified"] == sudoku.is_valid_solution(answer, puzzle)
        assert 1 <= response["supervision_steps"] <= solver.max_steps
        if not response["verified"]:
            assert response["supervision_steps"] == solver.max_steps  # thought until N_sup
    assert correct.mean() >= as_trained
    metrics = served_metrics(solver, puzzles, solutions)
    assert metrics.accuracy == pytest.approx(correct.mean())
    assert metrics.wrong_but_verified == 0
    assert 1.0 <= metrics.mean_steps <= solver.max_steps


def test_the_halting_head_does_not_stop_an_unverified_puzzle(
    solver: TrmSolver, heldout: tuple[Grids, Grids]
) -> None:
    # Halting-head mode stops at the first confident step; the served mode only
    # stops early on a verified answer, so it never answers fewer puzzles right.
    puzzles, solutions = heldout
    obey = SupervisionBatch(solver.model, solver.task, until_valid=False, max_batch=32)
    sure = SupervisionBatch(solver.model, solver.task, until_valid=True, max_batch=32)
    for index, puzzle in enumerate(puzzles):
        obey.admit(index, puzzle)
        sure.admit(index, puzzle)
    halted, verified = obey.run(), sure.run()
    for index, solution in enumerate(solutions):
        if np.array_equal(np.array(halted[index]["solution"]), solution):
            assert np.array_equal(np.array(verified[index]["solution"]), solution)
        if verified[index]["verified"]:
            assert verified[index]["supervision_steps"] <= solver.max_steps


def test_continuous_batch_lets_finished_puzzles_leave_and_new_ones_join(
    solver: TrmSolver, heldout: tuple[Grids, Grids]
) -> None:
    puzzles = heldout[0][:24]
    alone = {i: solver.solve(r) for i, r in enumerate(_requests(solver, puzzles))}
    batch = solver.new_batch()
    batch.max_batch = 8
    results: dict[Any, dict[str, Any]] = {}
    live_sizes: list[int] = []
    arrivals = list(range(len(puzzles)))
    for index in arrivals[:4]:
        batch.admit(index, puzzles[index])
    arrivals = arrivals[4:]
    while len(batch) or arrivals:
        # Two newcomers arrive at every step while others are mid-thought.
        for index in arrivals[:2]:
            batch.admit(index, puzzles[index])
        arrivals = arrivals[2:]
        results.update(batch.step())
        live_sizes.append(len(batch.live))
    assert sorted(results) == list(range(len(puzzles)))
    # Same answers and step counts as solving each puzzle alone.
    for index, response in results.items():
        assert response == alone[index]
    assert max(live_sizes) <= 8
    # Continuous batching: fewer forward passes than one-per-puzzle-step.
    steps_total = sum(r["supervision_steps"] for r in results.values())
    assert batch.forward_passes < steps_total
    assert batch.rows_stepped == steps_total


async def test_continuous_batcher_answers_concurrent_submissions(
    solver: TrmSolver, heldout: tuple[Grids, Grids]
) -> None:
    puzzles = heldout[0][:20]
    parsed = [solver.parse_puzzle(r) for r in _requests(solver, puzzles)]
    batcher: ContinuousBatcher[Any, dict[str, Any]] = ContinuousBatcher(solver.new_batch)
    async with batcher:
        first = [asyncio.create_task(batcher.submit(p)) for p in parsed[:10]]
        await asyncio.sleep(0)
        later = [asyncio.create_task(batcher.submit(p)) for p in parsed[10:]]
        answers = await asyncio.gather(*first, *later)
    assert answers == [solver.solve(r) for r in _requests(solver, puzzles)]
    stats = batcher.stats()
    assert stats.items == len(puzzles) and stats.live == 0
    assert stats.mean_batch_size > 1


async def test_a_failing_step_fails_its_requests_and_the_next_batch_works() -> None:
    class Exploding:
        def __init__(self) -> None:
            self.items: list[tuple[Any, int]] = []

        def admit(self, ticket: Any, item: int) -> None:
            self.items.append((ticket, item))

        def step(self) -> list[tuple[Any, int]]:
            if any(item < 0 for _, item in self.items):
                raise RuntimeError("negative")
            done, self.items = [(t, 2 * i) for t, i in self.items], []
            return done

        def __len__(self) -> int:
            return len(self.items)

    batcher: ContinuousBatcher[int, int] = ContinuousBatcher(Exploding)
    async with batcher:
        with pytest.raises(RuntimeError, match="negative"):
            await batcher.submit(-1)
        assert await batcher.submit(21) == 42


def test_verifier_rejects_wrong_6x6_answers() -> None:
    task = get_task("sudoku6")
    rng = np.random.default_rng(5)
    puzzle, solution = sudoku.generate_minimal(6, rng)
    assert verify_answer(task, puzzle, solution)
    swapped = solution.copy()
    swapped[0, [0, 1]] = swapped[0, [1, 0]]
    assert not verify_answer(task, puzzle, swapped)
