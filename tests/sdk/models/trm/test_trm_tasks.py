"""Puzzle generators: unique Sudoku solutions, shortest-path maze labels, token formats."""

from __future__ import annotations

import numpy as np
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


def test_solution_counter_sees_ambiguity_and_contradiction() -> None:
    empty = np.zeros((4, 4), dtype=np.int64)
    assert sudoku.count_solutions(empty, limit=2) == 2
    assert sudoku.count_solutions(empty, limit=1000) == 288  # all 4x4 sudoku grids
    clash = empty.copy()
    clash[0, 0] = clash[0, 3] = 2
    assert sudoku.count_solutions(clash) == 0
    assert sudoku.solve(clash) is None


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_sudoku_augmentation_keeps_pairs_valid(seed: int) -> None:
    rng = np.random.default_rng(seed)
    puzzle, solution = sudoku.generate_puzzle(4, 6, rng)
    new_puzzle, new_solution = sudoku.augment(np.stack([puzzle, solution]), rng)
    assert sudoku.is_valid_solution(new_solution, new_puzzle)
    assert (new_puzzle > 0).sum() == (puzzle > 0).sum()
    assert sudoku.count_solutions(new_puzzle) == 1


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
