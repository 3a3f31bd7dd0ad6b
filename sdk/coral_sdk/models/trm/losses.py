"""Deep-supervision loss: per-cell cross entropy plus the halting head's BCE."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_LABEL = -100


def _stablemax_s(x: torch.Tensor) -> torch.Tensor:
    # s(x) = x + 1 for x >= 0, 1 / (1 - x) otherwise: linear growth, no overflow.
    return torch.where(x < 0, 1 / (1 - x), x + 1)


def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-position cross entropy under stablemax (the paper's Sudoku/ARC loss), in float64."""
    s = _stablemax_s(logits.to(torch.float64))
    log_probs = torch.log(s / s.sum(dim=-1, keepdim=True))
    valid = labels != IGNORE_LABEL
    picked = torch.gather(log_probs, -1, torch.where(valid, labels, 0).unsqueeze(-1)).squeeze(-1)
    return torch.where(valid, -picked, 0.0)


def softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-position softmax cross entropy, 0 where the label is ignored."""
    flat = F.cross_entropy(
        logits.float().flatten(0, 1),
        labels.flatten(),
        ignore_index=IGNORE_LABEL,
        reduction="none",
    )
    return flat.view(labels.shape)


@dataclass
class LossBreakdown:
    """Loss of one supervision step and the metrics the progress bar shows."""

    total: torch.Tensor
    lm_loss: float
    q_loss: float
    cell_accuracy: float
    exact_accuracy: float
    q_accuracy: float


def act_loss(
    logits: torch.Tensor,
    q_halt_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    loss_type: str = "stablemax",
    q_weight: float = 0.5,
) -> LossBreakdown:
    """``sum_i mean_cells CE + q_weight * BCE(q_i, answer_i fully correct)``, divided by batch.

    ``labels`` use ``IGNORE_LABEL`` for cells that do not count (PAD).
    """
    ce = stablemax_cross_entropy if loss_type == "stablemax" else softmax_cross_entropy
    valid = labels != IGNORE_LABEL
    counts = valid.sum(-1).clamp(min=1)
    per_sample_lm = ce(logits, labels).sum(-1) / counts
    with torch.no_grad():
        correct_cells = (logits.argmax(-1) == labels) & valid
        all_correct = correct_cells.sum(-1) == valid.sum(-1)
    q_loss = F.binary_cross_entropy_with_logits(
        q_halt_logits.float(), all_correct.float(), reduction="sum"
    )
    batch = labels.shape[0]
    total = (per_sample_lm.sum().float() + q_weight * q_loss) / batch
    return LossBreakdown(
        total=total,
        lm_loss=float(per_sample_lm.detach().mean()),
        q_loss=float(q_loss.detach()) / batch,
        cell_accuracy=float(correct_cells.sum() / valid.sum().clamp(min=1)),
        exact_accuracy=float(all_correct.float().mean()),
        q_accuracy=float(((q_halt_logits > 0) == all_correct).float().mean()),
    )
