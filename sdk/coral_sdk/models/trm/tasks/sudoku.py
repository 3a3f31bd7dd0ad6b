"""Sudoku generation with a unique-solution guarantee, a counting solver, and augmentation.

Token format (the paper's): 0 = PAD, 1 = blank, 2.. = digits 1.. (digit + 1).
Grids are numpy int arrays of shape (size, size) holding 0 for blanks, 1..size digits.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

Grid = NDArray[np.int64]

PAD_TOKEN = 0
BLANK_TOKEN = 1


def box_shape(size: int) -> tuple[int, int]:
    """Box height and width: 2x2 for 4x4, 3x3 for 9x9 (only square sizes are supported)."""
    root = math.isqrt(size)
    if root * root != size:
        raise ValueError(f"sudoku size must be a perfect square, got {size}")
    return root, root


def _candidates(grid: Grid, row: int, col: int, size: int) -> list[int]:
    box = box_shape(size)[0]
    used = set(grid[row, :].tolist()) | set(grid[:, col].tolist())
    r0, c0 = (row // box) * box, (col // box) * box
    used |= set(grid[r0 : r0 + box, c0 : c0 + box].ravel().tolist())
    return [d for d in range(1, size + 1) if d not in used]


def count_solutions(grid: Grid, limit: int = 2) -> int:
    """Count solutions of ``grid`` (0 = blank), stopping once ``limit`` are found.

    Depth-first search that always branches on the blank with fewest candidates.
    """
    work = np.array(grid, dtype=np.int64, copy=True)
    size = work.shape[0]
    found = 0

    def search() -> bool:
        nonlocal found
        best: tuple[int, int] | None = None
        best_options: list[int] = []
        for row, col in zip(*np.nonzero(work == 0), strict=True):
            options = _candidates(work, int(row), int(col), size)
            if not options:
                return False
            if best is None or len(options) < len(best_options):
                best, best_options = (int(row), int(col)), options
                if len(options) == 1:
                    break
        if best is None:
            found += 1
            return found >= limit
        for digit in best_options:
            work[best] = digit
            if search():
                return True
        work[best] = 0
        return False

    if not givens_consistent(work):
        return 0
    search()
    return found


def solve(grid: Grid) -> Grid | None:
    """Return one solution of ``grid``, or None when it has none."""
    work = np.array(grid, dtype=np.int64, copy=True)
    size = work.shape[0]
    if not givens_consistent(work):
        return None

    def search() -> bool:
        blanks = np.argwhere(work == 0)
        if len(blanks) == 0:
            return True
        cells = [(int(r), int(c)) for r, c in blanks]
        options = {cell: _candidates(work, *cell, size) for cell in cells}
        cell = min(cells, key=lambda rc: len(options[rc]))
        for digit in options[cell]:
            work[cell] = digit
            if search():
                return True
        work[cell] = 0
        return False

    return work if search() else None


def givens_consistent(grid: Grid) -> bool:
    """True when no row, column or box repeats a given digit."""
    size = grid.shape[0]
    box = box_shape(size)[0]
    units = [grid[i, :] for i in range(size)] + [grid[:, i] for i in range(size)]
    units += [
        grid[r : r + box, c : c + box].ravel()
        for r in range(0, size, box)
        for c in range(0, size, box)
    ]
    for unit in units:
        digits = unit[unit > 0]
        if len(digits) != len(set(digits.tolist())):
            return False
    return True


def is_valid_solution(grid: Grid, puzzle: Grid | None = None) -> bool:
    """True when ``grid`` is a complete valid sudoku (agreeing with ``puzzle``'s givens)."""
    size = grid.shape[0]
    if grid.min() < 1 or grid.max() > size or not givens_consistent(grid):
        return False
    return puzzle is None or bool(np.all((puzzle == 0) | (puzzle == grid)))


def random_solution(size: int, rng: np.random.Generator) -> Grid:
    """A random complete grid, filled cell by cell with shuffled digits and backtracking."""
    box_shape(size)
    grid = np.zeros((size, size), dtype=np.int64)

    def fill(index: int) -> bool:
        if index == size * size:
            return True
        row, col = divmod(index, size)
        for digit in rng.permutation(_candidates(grid, row, col, size)):
            grid[row, col] = int(digit)
            if fill(index + 1):
                return True
        grid[row, col] = 0
        return False

    fill(0)
    return grid


def generate_puzzle(size: int, givens: int, rng: np.random.Generator) -> tuple[Grid, Grid]:
    """A (puzzle, solution) pair with exactly one solution and about ``givens`` clues.

    Clues are removed in random order while the solution stays unique; if the
    puzzle becomes minimal before reaching ``givens`` it keeps more clues.
    """
    solution = random_solution(size, rng)
    puzzle = solution.copy()
    filled = size * size
    for flat in rng.permutation(size * size):
        if filled <= givens:
            break
        cell = divmod(int(flat), size)
        puzzle[cell] = 0
        if count_solutions(puzzle, limit=2) != 1:
            puzzle[cell] = solution[cell]
        else:
            filled -= 1
    return puzzle, solution


def augment(grids: NDArray[np.int64], rng: np.random.Generator) -> NDArray[np.int64]:
    """Apply one random validity-preserving symmetry to a stack of grids (same for all).

    Digit relabelling, band and row-within-band shuffles, stack and column
    shuffles, and an optional transpose, as in the paper's Sudoku augmentation.
    Blanks (0) stay blank. Pass puzzle and solution stacked to keep them paired.
    """
    size = grids.shape[-1]
    box = box_shape(size)[0]
    digit_map = np.concatenate([[0], rng.permutation(size) + 1])
    bands = rng.permutation(box)
    rows = np.concatenate([band * box + rng.permutation(box) for band in bands])
    stacks = rng.permutation(box)
    cols = np.concatenate([stack * box + rng.permutation(box) for stack in stacks])
    out = digit_map[grids][..., rows, :][..., :, cols]
    if rng.random() < 0.5:
        out = np.swapaxes(out, -1, -2)
    return np.ascontiguousarray(out)


def encode_grid(grid: NDArray[np.int64]) -> NDArray[np.int64]:
    """Grid(s) of 0..size to token sequences: blank -> 1, digit d -> d + 1."""
    return (grid.reshape(*grid.shape[:-2], -1) + 1).astype(np.int64)


def decode_tokens(tokens: NDArray[np.int64], size: int) -> NDArray[np.int64]:
    """Token sequence(s) back to grids; PAD and blank both decode to 0."""
    grid = np.clip(tokens - 1, 0, size)
    return grid.reshape(*tokens.shape[:-1], size, size)
