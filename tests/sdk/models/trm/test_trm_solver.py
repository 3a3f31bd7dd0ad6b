"""TrmSolver with the shipped checkpoint: accuracy, batching invariance, request validation."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from coral.protocol.errors import InvalidMessage
from coral_sdk.models.trm import SHIPPED_SUDOKU4 as SHIPPED_CHECKPOINT
from coral_sdk.models.trm.checkpoint import load_model, read_state
from coral_sdk.models.trm.data import difficulty_of, heldout_set
from coral_sdk.models.trm.evaluation import exact_accuracy
from coral_sdk.models.trm.solver import (
    MalformedPuzzle,
    TrmSolver,
    UnsupportedTask,
    parse_puzzle_for,
    verify_answer,
)
from coral_sdk.models.trm.tasks import Grids, get_task, maze
from coral_sdk.runtime import DynamicBatcher

#: Held-out accuracy may differ from the recorded figure by float summation order only.
ACCURACY_MARGIN = 0.01


@pytest.fixture(scope="module")
def solver() -> TrmSolver:
    return TrmSolver.from_checkpoint(SHIPPED_CHECKPOINT, device="cpu")


@pytest.fixture(scope="module")
def heldout() -> tuple[Grids, Grids]:
    _, config = load_model(SHIPPED_CHECKPOINT)
    task = get_task(config.train.task)
    puzzles, solutions = heldout_set(task, difficulty_of(config.train), config.train.eval_size)
    return puzzles, solutions


def test_shipped_checkpoint_reaches_its_recorded_heldout_accuracy(
    solver: TrmSolver, heldout: tuple[Grids, Grids]
) -> None:
    recorded = read_state(SHIPPED_CHECKPOINT).history[-1]["heldout_exact"]
    measured = exact_accuracy(solver.model, solver.task, *heldout)
    assert recorded >= 0.9
    assert measured >= recorded - ACCURACY_MARGIN


def test_batched_answers_equal_unbatched_answers(
    solver: TrmSolver, heldout: tuple[Grids, Grids]
) -> None:
    requests = [{"task": "sudoku4", "grid": grid.tolist()} for grid in heldout[0][:12]]
    batched = solver.solve_batch(requests)
    one_by_one = [solver.solve(request) for request in requests]
    assert [r["solution"] for r in batched] == [r["solution"] for r in one_by_one]
    assert [r["supervision_steps"] for r in batched] == [r["supervision_steps"] for r in one_by_one]


async def test_answers_through_the_dynamic_batcher_equal_direct_answers(
    solver: TrmSolver, heldout: tuple[Grids, Grids]
) -> None:
    requests = [{"task": "sudoku4", "grid": grid.tolist()} for grid in heldout[0][:16]]
    batcher: DynamicBatcher[dict[str, Any], dict[str, Any]] = DynamicBatcher(
        solver.solve_batch, max_batch_size=8, max_wait_ms=20
    )
    async with batcher:
        through_batcher = await asyncio.gather(*(batcher.submit(r) for r in requests))
    assert through_batcher == [solver.solve(r) for r in requests]
    assert batcher.stats().mean_batch_size > 1


def test_response_format_and_verified_solutions(
    solver: TrmSolver, heldout: tuple[Grids, Grids]
) -> None:
    puzzles, solutions = heldout
    responses = solver.solve_batch(
        [{"task": "sudoku4", "grid": grid.tolist()} for grid in puzzles[:32]]
    )
    for puzzle, solution, response in zip(puzzles, solutions, responses, strict=False):
        assert set(response) == {"solution", "supervision_steps", "halt_confidence", "verified"}
        assert 1 <= response["supervision_steps"] <= solver.model.config.n_sup
        assert 0.0 <= response["halt_confidence"] <= 1.0
        answer = np.array(response["solution"])
        assert np.all(answer[puzzle > 0] == puzzle[puzzle > 0])  # givens are kept
        assert response["verified"] == bool(np.array_equal(answer, solution))
    assert sum(r["verified"] for r in responses) >= 28
    assert solver.solve_batch([]) == []


GOOD_GRID = [[1, 0, 0, 0], [0, 0, 3, 0], [0, 4, 0, 0], [0, 0, 0, 2]]


@pytest.mark.parametrize(
    ("request_data", "message"),
    [
        ("not a dict", "JSON object"),
        ({"grid": GOOD_GRID}, "'task' must be a string"),
        ({"task": "sudoku4"}, "missing 'grid'"),
        ({"task": "sudoku4", "grid": GOOD_GRID[:3]}, "must have 4 rows, got 3"),
        ({"task": "sudoku4", "grid": [[1, 0, 0], *GOOD_GRID[1:]]}, "row 0 must have 4 cells"),
        ({"task": "sudoku4", "grid": [[5, 0, 0, 0], *GOOD_GRID[1:]]}, "not a valid symbol"),
        ({"task": "sudoku4", "grid": [["1", 0, 0, 0], *GOOD_GRID[1:]]}, "must be an integer"),
        ({"task": "sudoku4", "grid": [[True, 0, 0, 0], *GOOD_GRID[1:]]}, "must be an integer"),
        ({"task": "sudoku4", "grid": "1234"}, "list of rows"),
        (
            {"task": "sudoku4", "grid": [[1, 0, 0, 1], *GOOD_GRID[1:]]},
            "digit 1 appears twice in row 0",
        ),
        (
            {"task": "sudoku4", "grid": [[1, 0, 0, 0], [0, 1, 0, 0], *GOOD_GRID[2:]]},
            "appears twice in box",
        ),
    ],
)
def test_malformed_puzzles_are_rejected_with_a_clear_message(
    solver: TrmSolver, request_data: Any, message: str
) -> None:
    with pytest.raises(MalformedPuzzle, match=message) as caught:
        solver.parse_puzzle(request_data)
    # Usable both as a ValueError and as a protocol error with a stable reason.
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, InvalidMessage)
    assert caught.value.reason == "malformed_puzzle"


def test_other_tasks_are_refused_by_a_sudoku4_solver(solver: TrmSolver) -> None:
    with pytest.raises(UnsupportedTask, match="serves task 'sudoku4', not 'sudoku9'"):
        solver.parse_puzzle({"task": "sudoku9", "grid": [[0] * 9] * 9})
    with pytest.raises(MalformedPuzzle):
        solver.solve_batch([{"task": "sudoku4", "grid": GOOD_GRID}, {"task": "maze"}])


def test_maze_requests_are_validated_and_answers_verified() -> None:
    task = get_task("maze")
    grid, labelled = maze.generate_maze(8, np.random.default_rng(3), min_path=5)
    parsed = parse_puzzle_for(task, {"task": "maze", "grid": grid.tolist()})
    assert np.array_equal(parsed.grid, grid)
    assert verify_answer(task, grid, labelled)
    wrong = labelled.copy()
    wrong[wrong == maze.PATH] = maze.OPEN
    assert not verify_answer(task, grid, wrong)
    two_starts = grid.copy()
    two_starts[two_starts == maze.GOAL] = maze.START
    with pytest.raises(MalformedPuzzle, match="exactly one start"):
        parse_puzzle_for(task, {"task": "maze", "grid": two_starts.tolist()})
