"""Sudoku on any box shape: fast bitmask solver, minimal-puzzle generator, checks, augmentation.

Sizes 4 (2x2 boxes), 6 (2x3 boxes: two rows, three columns) and 9 (3x3) are
the ones TRM trains on; any size whose boxes are ``box_shape(size)`` works.

Token format (the paper's): 0 = PAD, 1 = blank, 2.. = digits 1.. (digit + 1).
Grids are numpy int arrays of shape (size, size) holding 0 for blanks, 1..size digits.

The solver is an exact-cover search over bitmasks: each row, column and box
keeps a mask of digits already used; the search fills the blank with fewest
candidates first (naked singles fall out for free) and stops as soon as it has
found ``limit`` solutions. A *minimal* puzzle (unique solution, no clue can be
removed) comes from one pass over the clues of a random full grid in random
order: a clue goes when the grid without it still has exactly one solution.
One pass suffices, because removing clues only ever adds solutions, so a clue
that had to stay stays necessary.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

Grid = NDArray[np.int64]

PAD_TOKEN = 0
BLANK_TOKEN = 1


def box_shape(size: int) -> tuple[int, int]:
    """Box height and width: 2x2 for 4x4, 2x3 for 6x6, 3x3 for 9x9.

    The height is the largest divisor of ``size`` not above its square root, so
    boxes are as square as possible and never taller than wide.
    """
    if size < 1:
        raise ValueError(f"sudoku size must be positive, got {size}")
    height = max(d for d in range(1, math.isqrt(size) + 1) if size % d == 0)
    if height == 1 and size > 1:
        raise ValueError(f"sudoku size {size} has no box shape (prime sizes do not tile)")
    return height, size // height


class _Board:
    """Bitmask state of one grid: used-digit masks per row, column and box."""

    __slots__ = ("bh", "box_of", "boxes", "bw", "cells", "cols", "full", "rows", "size")

    def __init__(self, grid: Grid) -> None:
        size = int(grid.shape[0])
        self.size = size
        self.bh, self.bw = box_shape(size)
        self.full = (1 << size) - 1
        self.cells: list[int] = [int(v) for v in np.asarray(grid).ravel()]
        self.rows = [0] * size
        self.cols = [0] * size
        self.boxes = [0] * size
        per_row = size // self.bw
        self.box_of = [
            (i // size // self.bh) * per_row + (i % size) // self.bw for i in range(size * size)
        ]

    def load(self) -> bool:
        """Mark every given; False when two givens clash or a value is out of range."""
        size = self.size
        for index, value in enumerate(self.cells):
            if value == 0:
                continue
            if not 1 <= value <= size:
                return False
            bit = 1 << (value - 1)
            row, col, box = index // size, index % size, self.box_of[index]
            if (self.rows[row] | self.cols[col] | self.boxes[box]) & bit:
                return False
            self.rows[row] |= bit
            self.cols[col] |= bit
            self.boxes[box] |= bit
        return True

    def search(self, limit: int, order: list[int] | None, found: list[list[int]]) -> None:
        """Depth-first search appending up to ``limit`` solutions to ``found``.

        ``order`` (a permutation of digits 0..size-1) randomises the branch order.
        """
        size, cells, rows, cols, boxes, box_of, full = (
            self.size,
            self.cells,
            self.rows,
            self.cols,
            self.boxes,
            self.box_of,
            self.full,
        )
        blanks = [i for i, v in enumerate(cells) if v == 0]
        digits = order if order is not None else list(range(size))

        def recurse(open_cells: list[int]) -> bool:
            if not open_cells:
                found.append(list(cells))
                return len(found) >= limit
            best, best_mask, best_count = -1, 0, size + 1
            for index in open_cells:
                mask = full & ~(rows[index // size] | cols[index % size] | boxes[box_of[index]])
                count = mask.bit_count()
                if count < best_count:
                    best, best_mask, best_count = index, mask, count
                    if count <= 1:
                        break
            if best_count == 0:
                return False
            rest = [i for i in open_cells if i != best]
            row, col, box = best // size, best % size, box_of[best]
            for digit in digits:
                bit = 1 << digit
                if not best_mask & bit:
                    continue
                cells[best] = digit + 1
                rows[row] |= bit
                cols[col] |= bit
                boxes[box] |= bit
                stop = recurse(rest)
                rows[row] ^= bit
                cols[col] ^= bit
                boxes[box] ^= bit
                if stop:
                    cells[best] = 0
                    return True
            cells[best] = 0
            return False

        recurse(blanks)


def _solutions(grid: Grid, limit: int, order: list[int] | None = None) -> list[list[int]]:
    board = _Board(np.asarray(grid))
    if not board.load():
        return []
    found: list[list[int]] = []
    board.search(limit, order, found)
    return found


def count_solutions(grid: Grid, limit: int = 2) -> int:
    """Count solutions of ``grid`` (0 = blank), stopping once ``limit`` are found."""
    return len(_solutions(grid, limit))


def solve(grid: Grid) -> Grid | None:
    """Return one solution of ``grid``, or None when it has none."""
    found = _solutions(grid, 1)
    if not found:
        return None
    size = np.asarray(grid).shape[0]
    return np.array(found[0], dtype=np.int64).reshape(size, size)


def _units(size: int) -> list[list[int]]:
    bh, bw = box_shape(size)
    units = [[r * size + c for c in range(size)] for r in range(size)]
    units += [[r * size + c for r in range(size)] for c in range(size)]
    for r0 in range(0, size, bh):
        for c0 in range(0, size, bw):
            units.append([(r0 + r) * size + c0 + c for r in range(bh) for c in range(bw)])
    return units


def givens_consistent(grid: Grid) -> bool:
    """True when no row, column or box repeats a given digit (the contradiction check)."""
    flat = np.asarray(grid).ravel()
    for unit in _units(int(np.asarray(grid).shape[0])):
        digits = flat[unit]
        digits = digits[digits > 0]
        if len(digits) != len(np.unique(digits)):
            return False
    return True


def is_valid_solution(grid: Grid, puzzle: Grid | None = None) -> bool:
    """True when ``grid`` is a complete valid sudoku (agreeing with ``puzzle``'s givens)."""
    size = grid.shape[0]
    if grid.min() < 1 or grid.max() > size or not givens_consistent(grid):
        return False
    return puzzle is None or bool(np.all((puzzle == 0) | (puzzle == grid)))


def random_solution(size: int, rng: np.random.Generator) -> Grid:
    """A uniformly shuffled complete grid: a randomised search from the empty grid."""
    box_shape(size)
    order = [int(d) for d in rng.permutation(size)]
    # Random first row breaks the search's bias; the rest is the randomised search.
    empty = np.zeros((size, size), dtype=np.int64)
    empty[0] = np.array(order) + 1
    found = _solutions(empty, 1, [int(d) for d in rng.permutation(size)])
    return np.array(found[0], dtype=np.int64).reshape(size, size)


def _unique_without(board_cells: list[int], index: int, size: int) -> bool:
    """Whether the grid with cell ``index`` blanked still forces its old value.

    Equivalent to "exactly one solution" for a grid that has one: it looks for a
    solution with any *other* digit in that cell, which is a single search.
    """
    value = board_cells[index]
    grid = np.array(board_cells, dtype=np.int64).reshape(size, size)
    grid.flat[index] = 0
    board = _Board(grid)
    board.load()
    row, col, box = index // size, index % size, board.box_of[index]
    free = board.full & ~(board.rows[row] | board.cols[col] | board.boxes[box])
    free &= ~(1 << (value - 1))
    for digit in range(size):
        bit = 1 << digit
        if not free & bit:
            continue
        board.cells[index] = digit + 1
        board.rows[row] |= bit
        board.cols[col] |= bit
        board.boxes[box] |= bit
        found: list[list[int]] = []
        board.search(1, None, found)
        board.rows[row] ^= bit
        board.cols[col] ^= bit
        board.boxes[box] ^= bit
        board.cells[index] = 0
        if found:
            return False
    return True


def generate_minimal(size: int, rng: np.random.Generator) -> tuple[Grid, Grid]:
    """A (puzzle, solution) pair: unique solution and no clue removable (a minimal puzzle)."""
    solution = random_solution(size, rng)
    cells = [int(v) for v in solution.ravel()]
    for flat in rng.permutation(size * size):
        index = int(flat)
        if _unique_without(cells, index, size):
            cells[index] = 0
    puzzle = np.array(cells, dtype=np.int64).reshape(size, size)
    return puzzle, solution


def is_minimal(puzzle: Grid) -> bool:
    """True when ``puzzle`` has one solution and removing any clue breaks uniqueness."""
    if count_solutions(puzzle, limit=2) != 1:
        return False
    size = puzzle.shape[0]
    cells = [int(v) for v in puzzle.ravel()]
    return not any(v and _unique_without(cells, i, size) for i, v in enumerate(cells))


def generate_puzzle(size: int, givens: int, rng: np.random.Generator) -> tuple[Grid, Grid]:
    """A (puzzle, solution) pair with exactly one solution and about ``givens`` clues.

    Clues are removed in random order while the solution stays unique; if the
    puzzle becomes minimal before reaching ``givens`` it keeps more clues.
    """
    solution = random_solution(size, rng)
    cells = [int(v) for v in solution.ravel()]
    filled = size * size
    for flat in rng.permutation(size * size):
        if filled <= givens:
            break
        index = int(flat)
        if _unique_without(cells, index, size):
            cells[index] = 0
            filled -= 1
    return np.array(cells, dtype=np.int64).reshape(size, size), solution


def augment(grids: NDArray[np.int64], rng: np.random.Generator) -> NDArray[np.int64]:
    """Apply one random validity-preserving symmetry to a stack of grids (same for all).

    Digit relabelling, band and row-within-band shuffles, stack and column
    shuffles, and (square boxes only) an optional transpose, as in the paper's
    Sudoku augmentation. Transposing a 6x6 grid would turn its 2x3 boxes into
    3x2 ones, so rectangular boxes get a 180-degree rotation instead (already
    reachable by the shuffles, kept for symmetry of the code path).
    Blanks (0) stay blank. Pass puzzle and solution stacked to keep them paired.
    """
    size = grids.shape[-1]
    bh, bw = box_shape(size)
    digit_map = np.concatenate([[0], rng.permutation(size) + 1])
    # bands: groups of bh rows (size // bh of them); stacks: groups of bw columns.
    bands = rng.permutation(size // bh)
    rows = np.concatenate([band * bh + rng.permutation(bh) for band in bands])
    stacks = rng.permutation(size // bw)
    cols = np.concatenate([stack * bw + rng.permutation(bw) for stack in stacks])
    out = digit_map[grids][..., rows, :][..., :, cols]
    if rng.random() < 0.5:
        out = np.swapaxes(out, -1, -2) if bh == bw else out[..., ::-1, ::-1]
    return np.ascontiguousarray(out)


def encode_grid(grid: NDArray[np.int64]) -> NDArray[np.int64]:
    """Grid(s) of 0..size to token sequences: blank -> 1, digit d -> d + 1."""
    return (grid.reshape(*grid.shape[:-2], -1) + 1).astype(np.int64)


def decode_tokens(tokens: NDArray[np.int64], size: int) -> NDArray[np.int64]:
    """Token sequences back to grids; PAD and blank both decode to 0."""
    grid = np.clip(tokens - 1, 0, size)
    return grid.reshape(*tokens.shape[:-1], size, size)
