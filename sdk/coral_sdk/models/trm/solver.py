"""A pure request handler: JSON puzzles in, solutions out, for the agent wrapper to call.

Request: ``{"task": "sudoku4" | "sudoku9" | "maze", "grid": [[int, ...], ...]}``;
Sudoku grids hold 0 for blanks and 1..size for givens, maze grids hold
0 open, 1 wall, 2 start, 3 goal. Response: ``{"solution": grid,
"supervision_steps": int, "halt_confidence": float, "verified": bool}`` where
``verified`` says whether the answer checks out (valid Sudoku agreeing with the
givens, or a shortest start-to-goal path).

Serving thinks until it is sure: both tasks have an exact checker, so a puzzle
keeps taking supervision steps until its answer passes the checker or
``max_steps`` (N_sup) ran out, whatever the halting head says early on; the
halting head's confidence is reported, not obeyed. ``verified`` is computed by
the checker on the returned answer, so a verified answer is always valid.
``SupervisionBatch`` does this with continuous batching: every step runs once
over all live puzzles, finished puzzles leave the batch and waiting ones join.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from coral.protocol.errors import InvalidMessage
from coral_sdk.models.trm.checkpoint import load_model
from coral_sdk.models.trm.model import Carry, TinyRecursiveModel
from coral_sdk.models.trm.tasks import Grids, PuzzleTask, get_task, maze, sudoku
from coral_sdk.runtime.device import autocast_for, pick_device


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
    height, width = sudoku.box_shape(size)
    units = [(f"row {i}", grid[i, :]) for i in range(size)]
    units += [(f"column {i}", grid[:, i]) for i in range(size)]
    units += [
        (f"box at ({r}, {c})", grid[r : r + height, c : c + width].ravel())
        for r in range(0, size, height)
        for c in range(0, size, width)
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


@dataclass
class _Live:
    ticket: Hashable
    grid: Grids
    steps: int = 0


class SupervisionBatch:
    """Continuous batching over supervision steps, each puzzle until verified or ``max_steps``.

    ``admit`` queues a puzzle under a caller-chosen ticket; each ``step`` first
    fills free rows (up to ``max_batch``) from the queue with fresh carries,
    runs one supervision step over every live row, and returns the
    ``(ticket, response)`` of each puzzle that finished on it. Rows never
    interact, so a puzzle's answer does not depend on which others share its
    batch. With ``until_valid=False`` the halting head decides instead (a
    halt logit > 0 stops a puzzle), as a model without a checker would. A
    model trained without carry (``config.carry`` false) answers after one
    step: every further step would repeat that answer.
    """

    def __init__(
        self,
        model: TinyRecursiveModel,
        task: PuzzleTask,
        *,
        max_steps: int | None = None,
        max_batch: int = 64,
        until_valid: bool = True,
    ) -> None:
        self.model = model.eval()
        self.task = task
        self.max_steps = max_steps or model.config.n_sup
        self.max_batch = max_batch
        self.until_valid = until_valid
        self.waiting: deque[_Live] = deque()
        self.live: list[_Live] = []
        self._x: torch.Tensor | None = None
        self._carry: Carry | None = None
        #: Supervision steps run and rows stepped, for mean-batch statistics.
        self.forward_passes = 0
        self.rows_stepped = 0

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return next(self.model.parameters()).device

    def __len__(self) -> int:
        """Puzzles not finished yet (live plus waiting)."""
        return len(self.live) + len(self.waiting)

    def admit(self, ticket: Hashable, puzzle: ParsedPuzzle | Grids) -> None:
        """Queue one validated puzzle; it joins the batch at the next ``step``."""
        grid = puzzle.grid if isinstance(puzzle, ParsedPuzzle) else np.asarray(puzzle)
        self.waiting.append(_Live(ticket, grid))

    def _join(self) -> None:
        room = self.max_batch - len(self.live)
        joining = [self.waiting.popleft() for _ in range(min(room, len(self.waiting)))]
        if not joining:
            return
        tokens = torch.from_numpy(self.task.encode(np.stack([j.grid for j in joining])))
        x = self.model.embed(tokens.to(self.device))
        carry = self.model.initial_carry(len(joining))
        carry = Carry(carry.y.to(x.dtype), carry.z.to(x.dtype))
        if self._x is None or self._carry is None:
            self._x, self._carry = x, carry
        else:
            self._x = torch.cat([self._x, x])
            self._carry = Carry(
                torch.cat([self._carry.y, carry.y.to(self._carry.y.dtype)]),
                torch.cat([self._carry.z, carry.z.to(self._carry.z.dtype)]),
            )
        self.live.extend(joining)

    @torch.no_grad()
    def step(self) -> list[tuple[Hashable, dict[str, Any]]]:
        """One supervision step over the live batch; the responses of puzzles that finished."""
        self._join()
        if not self.live or self._x is None or self._carry is None:
            return []
        with autocast_for(self.device):
            out = self.model.deep_recursion(self._x, self._carry)
        self.forward_passes += 1
        self.rows_stepped += len(self.live)
        answers = self.task.decode(out.logits.argmax(-1).cpu().numpy())
        confidence = torch.sigmoid(out.q_halt_logits.float()).cpu().numpy()
        halting = (out.q_halt_logits > 0).cpu().numpy()
        finished: list[tuple[Hashable, dict[str, Any]]] = []
        keep: list[int] = []
        for row, live in enumerate(self.live):
            live.steps += 1
            answer = answers[row]
            if self.task.kind == "sudoku":
                # Givens are facts: keep them even where the network disagrees.
                answer = np.where(live.grid > 0, live.grid, answer)
            verified = verify_answer(self.task, live.grid, answer)
            done = verified if self.until_valid else bool(halting[row])
            # Without carry every further step repeats this answer: stop here.
            if done or live.steps >= self.max_steps or not self.model.config.carry:
                response = {
                    "solution": answer.tolist(),
                    "supervision_steps": live.steps,
                    "halt_confidence": round(float(confidence[row]), 6),
                    "verified": verified,
                }
                finished.append((live.ticket, response))
            else:
                keep.append(row)
        if len(keep) < len(self.live):
            index = torch.tensor(keep, dtype=torch.long, device=self.device)
            self.live = [self.live[row] for row in keep]
            self._x = self._x.index_select(0, index)
            self._carry = Carry(
                out.carry.y.index_select(0, index), out.carry.z.index_select(0, index)
            )
        else:
            self._carry = out.carry
        if not self.live:
            self._x, self._carry = None, None
        return finished

    def run(self) -> dict[Hashable, dict[str, Any]]:
        """Step until every admitted puzzle finished; responses by ticket."""
        results: dict[Hashable, dict[str, Any]] = {}
        while len(self):
            results.update(self.step())
        return results


class TrmSolver:
    """Solves batches of puzzle requests with one trained TRM (the checkpoint's task only)."""

    def __init__(
        self,
        model: TinyRecursiveModel,
        task: PuzzleTask,
        *,
        until_valid: bool = True,
        max_steps: int | None = None,
        max_batch: int = 64,
    ) -> None:
        self.model = model.eval()
        self.task = task
        self.until_valid = until_valid
        self.max_steps = max_steps or model.config.n_sup
        self.max_batch = max_batch

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device | None = None,
        *,
        until_valid: bool = True,
        max_steps: int | None = None,
        max_batch: int = 64,
    ) -> TrmSolver:
        """Load a checkpoint directory (EMA weights) onto ``device`` (CUDA when available)."""
        target = device if isinstance(device, torch.device) else pick_device(device)
        model, config = load_model(path, target)
        return cls(
            model,
            get_task(config.train.task),
            until_valid=until_valid,
            max_steps=max_steps,
            max_batch=max_batch,
        )

    def new_batch(self) -> SupervisionBatch:
        """An empty continuous batch with this solver's model and settings."""
        return SupervisionBatch(
            self.model,
            self.task,
            max_steps=self.max_steps,
            max_batch=self.max_batch,
            until_valid=self.until_valid,
        )

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
        """Solve every puzzle through one continuous batch; answers do not depend on batch makeup.

        Raises ``MalformedPuzzle`` if any request is malformed; parse requests
        one by one first to reject them individually.
        """
        parsed = [p if isinstance(p, ParsedPuzzle) else self.parse_puzzle(p) for p in puzzles]
        batch = self.new_batch()
        for index, puzzle in enumerate(parsed):
            batch.admit(index, puzzle)
        results = batch.run()
        return [results[index] for index in range(len(parsed))]

    def solve(self, puzzle: Mapping[str, Any]) -> dict[str, Any]:
        """Solve a single request (a batch of one)."""
        return self.solve_batch([puzzle])[0]
