"""Random grid mazes whose start-to-goal shortest path is unique, with path labels.

Cells (as in requests and responses): 0 = open, 1 = wall, 2 = start, 3 = goal,
4 = path (labels only). Tokens (the paper's ``"# SGo"`` -> 1..5, 0 = PAD):
wall 1, open 2, start 3, goal 4, path 5.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from numpy.typing import NDArray

Grid = NDArray[np.int64]

OPEN, WALL, START, GOAL, PATH = 0, 1, 2, 3, 4
CHARS = " #SGo"  # cell code -> character, for printing
#: cell code -> token: "# SGo" order gives wall 1, open 2, start 3, goal 4, path 5
CELL_TO_TOKEN = np.array([2, 1, 3, 4, 5], dtype=np.int64)
TOKEN_TO_CELL = np.array([OPEN, WALL, OPEN, START, GOAL, PATH], dtype=np.int64)
VOCAB_SIZE = 6

_STEPS = ((1, 0), (-1, 0), (0, 1), (0, -1))


def _find(grid: Grid, code: int) -> tuple[int, int]:
    where = np.argwhere(grid == code)
    if len(where) != 1:
        raise ValueError(f"maze needs exactly one cell of code {code}, found {len(where)}")
    return int(where[0][0]), int(where[0][1])


def bfs_distances(grid: Grid, source: tuple[int, int]) -> tuple[Grid, Grid]:
    """Distances from ``source`` over non-wall cells (-1 unreachable) and shortest-path counts."""
    height, width = grid.shape
    dist = np.full(grid.shape, -1, dtype=np.int64)
    ways = np.zeros(grid.shape, dtype=np.int64)
    dist[source], ways[source] = 0, 1
    queue = deque([source])
    while queue:
        row, col = queue.popleft()
        for dr, dc in _STEPS:
            nr, nc = row + dr, col + dc
            if not (0 <= nr < height and 0 <= nc < width) or grid[nr, nc] == WALL:
                continue
            if dist[nr, nc] == -1:
                dist[nr, nc] = dist[row, col] + 1
                queue.append((nr, nc))
            if dist[nr, nc] == dist[row, col] + 1:
                # saturate: only "one" versus "more than one" matters
                ways[nr, nc] = min(2, ways[nr, nc] + ways[row, col])
    return dist, ways


def shortest_path(grid: Grid) -> list[tuple[int, int]] | None:
    """One shortest start-to-goal path (inclusive), or None when the goal is unreachable."""
    start, goal = _find(grid, START), _find(grid, GOAL)
    dist, _ = bfs_distances(grid, start)
    if dist[goal] < 0:
        return None
    path = [goal]
    row, col = goal
    while (row, col) != start:
        for dr, dc in _STEPS:
            nr, nc = row + dr, col + dc
            inside = 0 <= nr < grid.shape[0] and 0 <= nc < grid.shape[1]
            if inside and dist[nr, nc] == dist[row, col] - 1:
                row, col = nr, nc
                break
        path.append((row, col))
    return path[::-1]


def label_maze(grid: Grid) -> Grid | None:
    """The maze with its shortest path's inner cells marked PATH; None if no path."""
    path = shortest_path(grid)
    if path is None:
        return None
    labelled = grid.copy()
    for cell in path[1:-1]:
        labelled[cell] = PATH
    return labelled


def generate_maze(
    size: int, rng: np.random.Generator, *, wall_density: float = 0.3, min_path: int = 0
) -> tuple[Grid, Grid]:
    """A (maze, labelled) pair whose shortest path is unique and at least ``min_path`` steps.

    Harder mazes come from a larger ``min_path`` (the paper's Maze-Hard keeps long paths).
    """
    while True:
        grid = np.where(rng.random((size, size)) < wall_density, WALL, OPEN).astype(np.int64)
        open_cells = np.argwhere(grid == OPEN)
        if len(open_cells) < 2:
            continue
        pick = rng.choice(len(open_cells), size=2, replace=False)
        start = (int(open_cells[pick[0]][0]), int(open_cells[pick[0]][1]))
        goal = (int(open_cells[pick[1]][0]), int(open_cells[pick[1]][1]))
        grid[start], grid[goal] = START, GOAL
        dist, ways = bfs_distances(grid, start)
        if dist[goal] < max(min_path, 2) or ways[goal] != 1:
            continue
        labelled = label_maze(grid)
        assert labelled is not None
        return grid, labelled


def augment(grids: NDArray[np.int64], rng: np.random.Generator) -> NDArray[np.int64]:
    """One random dihedral transform (8 symmetries), the same for every grid in the stack."""
    out = np.rot90(grids, k=int(rng.integers(4)), axes=(-2, -1))
    if rng.random() < 0.5:
        out = np.flip(out, axis=-1)
    return np.ascontiguousarray(out)


def encode_grid(grid: NDArray[np.int64]) -> NDArray[np.int64]:
    """Cell codes to token sequences."""
    return CELL_TO_TOKEN[grid.reshape(*grid.shape[:-2], -1)]


def decode_tokens(tokens: NDArray[np.int64], size: int) -> NDArray[np.int64]:
    """Token sequences back to cell codes (PAD decodes to open)."""
    return TOKEN_TO_CELL[np.clip(tokens, 0, VOCAB_SIZE - 1)].reshape(*tokens.shape[:-1], size, size)


def render(grid: Grid) -> str:
    """Printable text of a maze, one line per row."""
    return "\n".join("".join(CHARS[int(cell)] for cell in row) for row in grid)
