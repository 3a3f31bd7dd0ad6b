"""Exact (whole-puzzle) accuracy of a TRM on a set of puzzles."""

from __future__ import annotations

import numpy as np
import torch

from coral_sdk.models.trm.model import TinyRecursiveModel
from coral_sdk.models.trm.tasks import Grids, PuzzleTask
from coral_sdk.runtime.device import autocast_for


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
