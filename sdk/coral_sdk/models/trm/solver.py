"""A pure request handler: JSON puzzles in, solutions out, for the agent wrapper to call.

Request: ``{"task": "sudoku4" | "sudoku9" | "maze", "grid": [[int, ...], ...]}``;
Sudoku grids hold 0 for blanks and 1..size for givens, maze grids hold
0 open, 1 wall, 2 start, 3 goal. Response: ``{"solution": grid,
"supervision_steps": int, "halt_confidence": float, "verified": bool}`` where
``verified`` says whether the answer checks out (valid Sudoku agreeing with the
givens, or a shortest start-to-goal path).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from coral.protocol.errors import InvalidMessage
from coral_sdk.models.trm.checkpoint import load_model
from coral_sdk.models.trm.evaluation import predict_grids
from coral_sdk.models.trm.model import TinyRecursiveModel
from coral_sdk.models.trm.tasks import Grids, PuzzleTask, get_task, maze, sudoku
from coral_sdk.runtime.device import pick_device


class MalformedPuzzle(InvalidMessage, ValueError):
    """The request is not a puzzle this solver can take; ``detail`` says exactly why."""

    reason = "malformed_puzzle"


class UnsupportedTask(MalformedPuzzle):
    """The request names a task other than the one this checkpoint was trained for."""

    reason = "unsupported_task"


@dataclass(frozen=True)
class ParsedPuzzle:
    """A validated request: its task name and grid (size x size int array)."""

    task: str
    grid: Grids


def _grid_from(data: Any, size: int, allowed: range) -> Grids:
    if not isinstance(data, Sequence) or isinstance(data, str | bytes):
        raise MalformedPuzzle("'grid' must be a list of rows")
    if len(data) != size:
        raise MalformedPuzzle(f"'grid' must have {size} rows, got {len(data)}")
    rows: list[list[int]] = []
    for r, row in enumerate(data):
        if not isinstance(row, Sequence) or isinstance(row, str | bytes):
            raise MalformedPuzzle(f"row {r} must be a list of integers")
        if len(row) != size:
            raise MalformedPuzzle(f"row {r} must have {size} cells, got {len(row)}")
        for c, cell in enumerate(row):
            # bool is an int subclass, but True is not a digit anyone meant.
            if isinstance(cell, bool) or not isinstance(cell, int):
                raise MalformedPuzzle(f"cell ({r}, {c}) must be an integer, got {cell!r}")
            if cell not in allowed:
                raise MalformedPuzzle(
                    f"cell ({r}, {c}) = {cell} is not a valid symbol "
                    f"(allowed {allowed.start}..{allowed.stop - 1})"
                )
        rows.append(list(row))
    return np.array(rows, dtype=np.int64)


def _sudoku_contradiction(grid: Grids) -> str | None:
    size = grid.shape[0]
    box = sudoku.box_shape(size)[0]
    units = [(f"row {i}", grid[i, :]) for i in range(size)]
    units += [(f"column {i}", grid[:, i]) for i in range(size)]
    units += [
        (f"box at ({r}, {c})", grid[r : r + box, c : c + box].ravel())
        for r in range(0, size, box)
        for c in range(0, size, box)
    ]
    for name, unit in units:
        digits = unit[unit > 0].tolist()
        repeated = sorted({d for d in digits if digits.count(d) > 1})
        if repeated:
            return f"contradictory givens: digit {repeated[0]} appears twice in {name}"
    return None


def parse_puzzle_for(task: PuzzleTask, data: Any) -> ParsedPuzzle:
    """Validate one request against ``task``; raise ``MalformedPuzzle`` saying what is wrong."""
    if not isinstance(data, Mapping):
        raise MalformedPuzzle("a puzzle must be a JSON object with 'task' and 'grid'")
    name = data.get("task")
    if not isinstance(name, str):
        raise MalformedPuzzle("'task' must be a string such as 'sudoku4'")
    if name != task.name:
        raise UnsupportedTask(f"this solver serves task {task.name!r}, not {name!r}")
    if "grid" not in data:
        raise MalformedPuzzle("missing 'grid'")
    if task.kind == "sudoku":
        grid = _grid_from(data["grid"], task.size, range(0, task.size + 1))
        problem = _sudoku_contradiction(grid)
    else:
        grid = _grid_from(data["grid"], task.size, range(0, maze.GOAL + 1))
        starts, goals = int((grid == maze.START).sum()), int((grid == maze.GOAL).sum())
        problem = None
        if starts != 1 or goals != 1:
            problem = (
                f"a maze needs exactly one start (2) and one goal (3); got {starts} and {goals}"
            )
    if problem is not None:
        raise MalformedPuzzle(problem)
    return ParsedPuzzle(name, grid)


def verify_answer(task: PuzzleTask, puzzle: Grids, answer: Grids) -> bool:
    """True when ``answer`` solves ``puzzle``: a valid Sudoku, or a shortest maze path."""
    if task.kind == "sudoku":
        return sudoku.is_valid_solution(answer, puzzle)
    path = maze.shortest_path(puzzle)
    if path is None:
        return False
    # Same cells as the puzzle except a connected path of the optimal length.
    marked = answer == maze.PATH
    unchanged = np.all((answer == puzzle) | (marked & (puzzle == maze.OPEN)))
    if not unchanged or int(marked.sum()) != len(path) - 2:
        return False
    walkable = np.where(marked, maze.OPEN, np.where(puzzle == maze.OPEN, maze.WALL, puzzle))
    return maze.shortest_path(walkable) is not None


class TrmSolver:
    """Solves batches of puzzle requests with one trained TRM (the checkpoint's task only)."""

    def __init__(
        self,
        model: TinyRecursiveModel,
        task: PuzzleTask,
        *,
        halt_early: bool = True,
        max_steps: int | None = None,
    ) -> None:
        self.model = model.eval()
        self.task = task
        self.halt_early = halt_early
        self.max_steps = max_steps or model.config.n_sup

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device | None = None,
        *,
        halt_early: bool = True,
    ) -> TrmSolver:
        """Load a checkpoint directory (EMA weights) onto ``device`` (CUDA when available)."""
        target = device if isinstance(device, torch.device) else pick_device(device)
        model, config = load_model(path, target)
        return cls(model, get_task(config.train.task), halt_early=halt_early)

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return next(self.model.parameters()).device

    def parse_puzzle(self, data: Any) -> ParsedPuzzle:
        """Validate one request; raise ``MalformedPuzzle`` (a ValueError) when it is wrong."""
        return parse_puzzle_for(self.task, data)

    def solve_batch(
        self, puzzles: Sequence[Mapping[str, Any] | ParsedPuzzle]
    ) -> list[dict[str, Any]]:
        """Solve every puzzle in one batched forward; answers do not depend on batch makeup.

        Raises ``MalformedPuzzle`` if any request is malformed; parse requests
        one by one first to reject them individually.
        """
        if not puzzles:
            return []
        parsed = [p if isinstance(p, ParsedPuzzle) else self.parse_puzzle(p) for p in puzzles]
        grids = np.stack([p.grid for p in parsed])
        answers, steps, confidence = predict_grids(
            self.model,
            self.task,
            grids,
            batch_size=len(grids),
            steps=self.max_steps,
            halt_early=self.halt_early,
        )
        if self.task.kind == "sudoku":
            # Givens are facts: keep them even where the network disagrees.
            answers = np.where(grids > 0, grids, answers)
        return [
            {
                "solution": answer.tolist(),
                "supervision_steps": int(used),
                "halt_confidence": round(float(halt), 6),
                "verified": verify_answer(self.task, grid, answer),
            }
            for grid, answer, used, halt in zip(grids, answers, steps, confidence, strict=True)
        ]

    def solve(self, puzzle: Mapping[str, Any]) -> dict[str, Any]:
        """Solve a single request (a batch of one)."""
        return self.solve_batch([puzzle])[0]
