"""Exact (whole-puzzle) accuracy of a TRM on a set of puzzles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from coral_sdk.models.trm.model import TinyRecursiveModel
from coral_sdk.models.trm.tasks import Grids, PuzzleTask
from coral_sdk.runtime.device import autocast_for

if TYPE_CHECKING:
    from coral_sdk.models.trm.solver import TrmSolver


def without_recursion(model: TinyRecursiveModel) -> TinyRecursiveModel:
    """The same weights run with T=1, n=1 (one z-update and one y-update per step)."""
    config = model.config.model_copy(update={"T": 1, "n": 1})
    flat = TinyRecursiveModel(config)
    flat.load_state_dict(model.state_dict())
    device = next(model.parameters()).device
    return flat.to(device).eval()


def predict_grids(
    model: TinyRecursiveModel,
    task: PuzzleTask,
    puzzles: Grids,
    *,
    batch_size: int = 256,
    steps: int | None = None,
    halt_early: bool = False,
) -> tuple[Grids, np.ndarray, np.ndarray]:
    """Solve ``puzzles`` in batches; return predicted grids, steps used and halt confidence."""
    device = next(model.parameters()).device
    grids, used, confidence = [], [], []
    model.eval()
    for start in range(0, len(puzzles), batch_size):
        tokens = torch.from_numpy(task.encode(puzzles[start : start + batch_size])).to(device)
        with autocast_for(device):
            answer, steps_used, halt = model.predict(tokens, steps=steps, halt_early=halt_early)
        grids.append(task.decode(answer.cpu().numpy()))
        used.append(steps_used.cpu().numpy())
        confidence.append(halt.float().cpu().numpy())
    return np.concatenate(grids), np.concatenate(used), np.concatenate(confidence)


def exact_accuracy(
    model: TinyRecursiveModel,
    task: PuzzleTask,
    puzzles: Grids,
    solutions: Grids,
    *,
    batch_size: int = 256,
    steps: int | None = None,
) -> float:
    """Fraction of puzzles whose every cell matches the solution, after all ``steps``."""
    predicted, _, _ = predict_grids(model, task, puzzles, batch_size=batch_size, steps=steps)
    return float(np.all(predicted == solutions, axis=(1, 2)).mean())


@dataclass(frozen=True)
class ServedMetrics:
    """How the served path did: accuracy, mean steps, and verified answers that were wrong."""

    accuracy: float
    verified_rate: float
    mean_steps: float
    wrong_but_verified: int
    count: int


def served_metrics(
    solver: TrmSolver, puzzles: Grids, solutions: Grids, *, chunk: int = 256
) -> ServedMetrics:
    """Solve ``puzzles`` through the served path (steps until verified) and score it."""
    responses = []
    for start in range(0, len(puzzles), chunk):
        requests = [
            {"task": solver.task.name, "grid": grid.tolist()}
            for grid in puzzles[start : start + chunk]
        ]
        with torch.inference_mode():
            responses.extend(solver.solve_batch(requests))
    answers = np.array([r["solution"] for r in responses])
    correct = np.all(answers == solutions, axis=(1, 2))
    verified = np.array([bool(r["verified"]) for r in responses])
    steps = np.array([r["supervision_steps"] for r in responses])
    return ServedMetrics(
        accuracy=float(correct.mean()),
        verified_rate=float(verified.mean()),
        mean_steps=float(steps.mean()),
        wrong_but_verified=int((verified & ~correct).sum()),
        count=len(responses),
    )
