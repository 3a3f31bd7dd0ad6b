"""Puzzle generators: unique Sudoku solutions, shortest-path maze labels, token formats."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coral_sdk.models.trm.data import heldout_set, training_set
from coral_sdk.models.trm.tasks import Difficulty, get_task, maze, sudoku


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), givens=st.integers(4, 10))
def test_every_generated_sudoku4_has_exactly_one_solution(seed: int, givens: int) -> None:
    puzzle, solution = sudoku.generate_puzzle(4, givens, np.random.default_rng(seed))
    assert sudoku.count_solutions(puzzle, limit=3) == 1
    assert sudoku.is_valid_solution(solution, puzzle)
    solved = sudoku.solve(puzzle)
    assert solved is not None and np.array_equal(solved, solution)
    # Difficulty control: never fewer clues than asked (more only when minimal).
    assert (puzzle > 0).sum() >= givens


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_every_generated_sudoku9_has_exactly_one_solution(seed: int) -> None:
    puzzle, solution = sudoku.generate_puzzle(9, 30, np.random.default_rng(seed))
    assert sudoku.count_solutions(puzzle, limit=3) == 1
    assert sudoku.is_valid_solution(solution, puzzle)
    assert (puzzle > 0).sum() == 30


@pytest.mark.parametrize(("size", "shape"), [(4, (2, 2)), (6, (2, 3)), (9, (3, 3)), (8, (2, 4))])
def test_box_shapes_are_as_square_as_possible(size: int, shape: tuple[int, int]) -> None:
    assert sudoku.box_shape(size) == shape


def test_prime_sizes_have_no_boxes() -> None:
    with pytest.raises(ValueError, match="no box shape"):
        sudoku.box_shape(5)


def _brute_force_valid(grid: np.ndarray) -> bool:
    """Independent check: every row, column and box holds each digit once."""
    size = grid.shape[0]
    height, width = sudoku.box_shape(size)
    digits = set(range(1, size + 1))
    boxes = [
        grid[r : r + height, c : c + width].ravel()
        for r in range(0, size, height)
        for c in range(0, size, width)
    ]
    return all(set(unit.tolist()) == digits for unit in [*grid, *grid.T, *boxes])


@pytest.mark.parametrize(("size", "examples"), [(4, 20), (6, 10), (9, 2)])
def test_minimal_puzzles_are_unique_and_no_clue_is_removable(size: int, examples: int) -> None:
    rng = np.random.default_rng(size)
    for _ in range(examples):
        puzzle, solution = sudoku.generate_minimal(size, rng)
        assert _brute_force_valid(solution)
        assert np.all((puzzle == 0) | (puzzle == solution))
        assert sudoku.count_solutions(puzzle, limit=3) == 1
        # Minimality, checked by brute force: every single clue removed gives >1 solution.
        for r, c in np.argwhere(puzzle > 0):
            weaker = puzzle.copy()
            weaker[r, c] = 0
            assert sudoku.count_solutions(weaker, limit=2) == 2
        assert sudoku.is_minimal(puzzle)


def test_minimal_6x6_puzzles_have_about_ten_givens() -> None:
    rng = np.random.default_rng(0)
    givens = [int((sudoku.generate_minimal(6, rng)[0] > 0).sum()) for _ in range(40)]
    assert 9 <= float(np.mean(givens)) <= 11.5


def test_a_non_minimal_puzzle_is_recognised() -> None:
    rng = np.random.default_rng(1)
    puzzle, solution = sudoku.generate_minimal(6, rng)
    extra = np.argwhere(puzzle == 0)[0]
    padded = puzzle.copy()
    padded[tuple(extra)] = solution[tuple(extra)]
    assert not sudoku.is_minimal(padded)
    assert not sudoku.is_minimal(np.zeros((6, 6), dtype=np.int64))


def test_6x6_boxes_are_two_rows_by_three_columns() -> None:
    grid = np.zeros((6, 6), dtype=np.int64)
    grid[0, 0] = grid[1, 2] = 5  # same 2x3 box
    assert not sudoku.givens_consistent(grid)
    grid[1, 2] = 0
    grid[2, 0] = 5  # same column only
    assert not sudoku.givens_consistent(grid)
    grid[2, 0] = 0
    grid[2, 3] = 5  # different row, column and box (a 3x2 box would share it)
    assert sudoku.givens_consistent(grid)
    # 6x6 has 28,200,960 grids; the first row fixed leaves 28,200,960 / 720.
    first_row = np.zeros((6, 6), dtype=np.int64)
    first_row[0] = [1, 2, 3, 4, 5, 6]
    assert sudoku.count_solutions(first_row, limit=100_000) == 28_200_960 // 720


def test_solution_counter_sees_ambiguity_and_contradiction() -> None:
    empty = np.zeros((4, 4), dtype=np.int64)
    assert sudoku.count_solutions(empty, limit=2) == 2
    assert sudoku.count_solutions(empty, limit=1000) == 288  # all 4x4 sudoku grids
    clash = empty.copy()
    clash[0, 0] = clash[0, 3] = 2
    assert sudoku.count_solutions(clash) == 0
    assert sudoku.solve(clash) is None


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.sampled_from([4, 6, 9]))
def test_sudoku_augmentation_keeps_pairs_valid(seed: int, size: int) -> None:
    rng = np.random.default_rng(seed)
    puzzle, solution = sudoku.generate_puzzle(size, {4: 6, 6: 14, 9: 32}[size], rng)
    new_puzzle, new_solution = sudoku.augment(np.stack([puzzle, solution]), rng)
    assert _brute_force_valid(new_solution)
    assert np.all((new_puzzle == 0) | (new_puzzle == new_solution))
    assert (new_puzzle > 0).sum() == (puzzle > 0).sum()
    assert sudoku.count_solutions(new_puzzle) == 1


def test_6x6_augmentation_reaches_many_distinct_grids_and_never_transposes_boxes() -> None:
    rng = np.random.default_rng(3)
    _, solution = sudoku.generate_minimal(6, rng)
    seen = {sudoku.augment(solution[None], rng)[0].tobytes() for _ in range(300)}
    assert len(seen) > 250  # 720 relabellings x 1152 row/column shuffles
    for grid in seen:
        assert _brute_force_valid(np.frombuffer(grid, dtype=np.int64).reshape(6, 6))


def test_sudoku_tokens_follow_the_paper_format() -> None:
    grid = np.array([[0, 1, 2, 3], [4, 0, 0, 0], [0] * 4, [0] * 4], dtype=np.int64)
    tokens = sudoku.encode_grid(grid)
    assert tokens[:5].tolist() == [1, 2, 3, 4, 5]  # blank 1, digit d -> d + 1
    assert np.array_equal(sudoku.decode_tokens(tokens, 4), grid)


def _independent_shortest_length(grid: np.ndarray) -> int:
    start = tuple(np.argwhere(grid == maze.START)[0])
    goal = tuple(np.argwhere(grid == maze.GOAL)[0])
    frontier, seen, steps = {start}, {start}, 0
    while frontier:
        if goal in frontier:
            return steps
        nxt = set()
        for r, c in frontier:
            for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                ok = 0 <= nr < grid.shape[0] and 0 <= nc < grid.shape[1]
                if ok and grid[nr, nc] != maze.WALL and (nr, nc) not in seen:
                    seen.add((nr, nc))
                    nxt.add((nr, nc))
        frontier, steps = nxt, steps + 1
    return -1


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), min_path=st.integers(0, 10))
def test_maze_labels_are_shortest_paths(seed: int, min_path: int) -> None:
    grid, labelled = maze.generate_maze(8, np.random.default_rng(seed), min_path=min_path)
    shortest = _independent_shortest_length(grid)
    assert shortest >= max(min_path, 2)
    path_cells = np.argwhere(labelled == maze.PATH)
    assert len(path_cells) == shortest - 1
    # Label changes only open cells to path; walls, start and goal stay.
    changed = labelled != grid
    assert np.all(grid[changed] == maze.OPEN) and np.all(labelled[changed] == maze.PATH)
    # The marked cells alone connect start to goal.
    only_path = np.where(labelled == maze.PATH, maze.OPEN, np.where(grid == maze.OPEN, 1, grid))
    assert _independent_shortest_length(only_path) == shortest


def test_maze_shortest_path_is_unique_and_tokens_round_trip() -> None:
    grid, labelled = maze.generate_maze(8, np.random.default_rng(7), min_path=6)
    _, ways = maze.bfs_distances(grid, tuple(np.argwhere(grid == maze.START)[0]))
    assert ways[tuple(np.argwhere(grid == maze.GOAL)[0])] == 1
    tokens = maze.encode_grid(labelled)
    assert set(tokens.tolist()) <= {1, 2, 3, 4, 5}
    assert np.array_equal(maze.decode_tokens(tokens, 8), labelled)
    assert "S" in maze.render(grid) and "o" in maze.render(labelled)


def test_heldout_set_is_fixed_and_disjoint_from_training() -> None:
    task = get_task("sudoku4")
    difficulty = Difficulty(givens_min=4, givens_max=6)
    first = heldout_set(task, difficulty, 40)
    again = heldout_set(task, difficulty, 40)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    train_puzzles, _ = training_set(task, difficulty, 200, seed=1, exclude=first[0])
    held = {p.tobytes() for p in first[0]}
    assert not held & {p.tobytes() for p in train_puzzles}
    assert len({p.tobytes() for p in train_puzzles}) == 200
