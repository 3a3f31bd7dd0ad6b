"""The shipped 6x6 checkpoints: recorded figures hold on a held-out slice, with a margin.

The recorded figures (``state.json`` history) were measured on the first 256
held-out puzzles; here a 128-puzzle slice of the same fixed held-out set is
scored again, so the margin covers sampling noise (about 3 standard errors).
"""

from __future__ import annotations

import pytest

from coral_sdk.models.trm import (
    SHIPPED_SUDOKU6,
    SHIPPED_SUDOKU6_ABLATION,
    SHIPPED_SUDOKU6_NOCARRY,
)
from coral_sdk.models.trm.checkpoint import load_model, read_state
from coral_sdk.models.trm.data import difficulty_of, heldout_set
from coral_sdk.models.trm.evaluation import exact_accuracy, served_metrics
from coral_sdk.models.trm.solver import TrmSolver
from coral_sdk.models.trm.tasks import Grids, get_task, sudoku

SLICE = 128
MARGIN = 0.13


@pytest.fixture(scope="module")
def heldout() -> tuple[Grids, Grids]:
    _, config = load_model(SHIPPED_SUDOKU6)
    assert config.train.task == "sudoku6" and config.train.minimal
    return heldout_set(get_task("sudoku6"), difficulty_of(config.train), SLICE)


def test_heldout_puzzles_are_minimal_6x6(heldout: tuple[Grids, Grids]) -> None:
    for puzzle in heldout[0][:8]:
        assert sudoku.is_minimal(puzzle)


def test_trm_and_ablation_match_their_recorded_accuracy(heldout: tuple[Grids, Grids]) -> None:
    task = get_task("sudoku6")
    trm, trm_config = load_model(SHIPPED_SUDOKU6)
    flat, flat_config = load_model(SHIPPED_SUDOKU6_ABLATION)
    # Same parameters and budget; only the recursion differs.
    assert sum(p.numel() for p in trm.parameters()) == sum(p.numel() for p in flat.parameters())
    assert read_state(SHIPPED_SUDOKU6).step == read_state(SHIPPED_SUDOKU6_ABLATION).step
    assert (flat_config.model.T, flat_config.model.n) == (1, 1)
    assert trm_config.train == flat_config.train
    measured = {
        "trm": exact_accuracy(trm, task, *heldout),
        "flat": exact_accuracy(flat, task, *heldout),
    }
    recorded = {
        "trm": read_state(SHIPPED_SUDOKU6).history[-1]["heldout_exact"],
        "flat": read_state(SHIPPED_SUDOKU6_ABLATION).history[-1]["heldout_exact"],
    }
    for name in measured:
        assert abs(measured[name] - recorded[name]) <= MARGIN, (measured, recorded)
    assert recorded["trm"] > recorded["flat"]


def test_no_carry_ablation_matches_its_record_and_answers_in_one_application(
    heldout: tuple[Grids, Grids],
) -> None:
    task = get_task("sudoku6")
    trm, trm_config = load_model(SHIPPED_SUDOKU6)
    flat, flat_config = load_model(SHIPPED_SUDOKU6_NOCARRY)
    # Same parameters, data, optimizer and optimizer steps; no recursion at all.
    assert sum(p.numel() for p in trm.parameters()) == sum(p.numel() for p in flat.parameters())
    assert read_state(SHIPPED_SUDOKU6_NOCARRY).step == read_state(SHIPPED_SUDOKU6).step
    model = flat_config.model
    assert (model.T, model.n, model.n_sup, model.carry) == (1, 1, trm_config.model.n_sup, False)
    # The preset's 4000-step schedule is constant after warm-up: only the stop differs.
    assert flat_config.train.model_copy(update={"steps": 0}) == trm_config.train.model_copy(
        update={"steps": 0}
    )
    measured = exact_accuracy(flat, task, *heldout)
    recorded = read_state(SHIPPED_SUDOKU6_NOCARRY).history[-1]["heldout_exact"]
    assert abs(measured - recorded) <= MARGIN, (measured, recorded)
    assert exact_accuracy(flat, task, *heldout, steps=1) == measured
    assert read_state(SHIPPED_SUDOKU6).history[-1]["heldout_exact"] > recorded


def test_served_path_is_at_least_as_trained_and_never_wrongly_verified(
    heldout: tuple[Grids, Grids],
) -> None:
    puzzles, solutions = heldout
    solver = TrmSolver.from_checkpoint(SHIPPED_SUDOKU6, device="cpu")
    as_trained = exact_accuracy(solver.model, solver.task, puzzles, solutions)
    served = served_metrics(solver, puzzles, solutions)
    assert served.accuracy >= as_trained
    assert served.wrong_but_verified == 0
    assert served.verified_rate == pytest.approx(served.accuracy)
    assert 1.0 <= served.mean_steps <= solver.max_steps
