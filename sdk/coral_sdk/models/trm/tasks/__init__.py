"""Puzzle tasks TRM trains on, generated locally (no download): Sudoku 4x4/6x6/9x9 and mazes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from coral_sdk.models.trm.tasks import maze, sudoku

Grids = NDArray[np.int64]


@dataclass(frozen=True)
class Difficulty:
    """How hard generated puzzles are: Sudoku clue counts, maze path length and walls."""

    givens_min: int = 4
    givens_max: int = 8
    min_path: int = 0
    wall_density: float = 0.3
    #: Sudoku: ignore the clue counts and generate minimal puzzles (unique
    #: solution, no clue removable; about 10 givens on 6x6, 24 on 9x9).
    minimal: bool = False


@dataclass(frozen=True)
class PuzzleTask:
    """One puzzle family: grid size, token vocabulary, generator and checker."""

    name: str
    kind: Literal["sudoku", "maze"]
    size: int

    @property
    def vocab_size(self) -> int:
        """Token vocabulary: PAD, blank, digits for Sudoku; PAD + "# SGo" for mazes."""
        return self.size + 2 if self.kind == "sudoku" else maze.VOCAB_SIZE

    @property
    def seq_len(self) -> int:
        """Cells per puzzle, in row-major order."""
        return self.size * self.size

    def generate(
        self, count: int, rng: np.random.Generator, difficulty: Difficulty
    ) -> tuple[Grids, Grids]:
        """``count`` (puzzle, solution) grid pairs, stacked as (count, size, size) arrays."""
        puzzles, solutions = [], []
        for _ in range(count):
            if self.kind == "sudoku" and difficulty.minimal:
                puzzle, solution = sudoku.generate_minimal(self.size, rng)
            elif self.kind == "sudoku":
                givens = int(rng.integers(difficulty.givens_min, difficulty.givens_max + 1))
                puzzle, solution = sudoku.generate_puzzle(self.size, givens, rng)
            else:
                puzzle, solution = maze.generate_maze(
                    self.size,
                    rng,
                    wall_density=difficulty.wall_density,
                    min_path=difficulty.min_path,
                )
            puzzles.append(puzzle)
            solutions.append(solution)
        return np.stack(puzzles), np.stack(solutions)

    def augment(
        self, puzzles: Grids, solutions: Grids, rng: np.random.Generator
    ) -> tuple[Grids, Grids]:
        """An independent random symmetry per pair (the paper's data augmentation)."""
        module = sudoku if self.kind == "sudoku" else maze
        pairs = np.stack([puzzles, solutions], axis=1)
        out = np.stack([module.augment(pair, rng) for pair in pairs])
        return out[:, 0], out[:, 1]

    def encode(self, grids: Grids) -> Grids:
        """Grids to token sequences of length ``seq_len``."""
        if self.kind == "sudoku":
            return sudoku.encode_grid(grids)
        return maze.encode_grid(grids)

    def decode(self, tokens: Grids) -> Grids:
        """Token sequences back to grids."""
        if self.kind == "sudoku":
            return sudoku.decode_tokens(tokens, self.size)
        return maze.decode_tokens(tokens, self.size)


TASKS: dict[str, PuzzleTask] = {
    "sudoku4": PuzzleTask("sudoku4", "sudoku", 4),
    "sudoku6": PuzzleTask("sudoku6", "sudoku", 6),
    "sudoku9": PuzzleTask("sudoku9", "sudoku", 9),
    "maze": PuzzleTask("maze", "maze", 8),
}


def get_task(name: str) -> PuzzleTask:
    """Look up a task by name; ValueError lists the known names."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}") from None


__all__ = ["TASKS", "Difficulty", "PuzzleTask", "get_task", "maze", "sudoku"]
