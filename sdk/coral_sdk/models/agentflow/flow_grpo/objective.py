"""The Flow-GRPO policy loss for the planner (per-turn clipped surrogate plus KL).

Each planner turn is one single-turn PPO/GRPO sample whose advantage is its
trajectory's. Turns are averaged within a trajectory, then trajectories are
averaged, matching ``1/G sum_i 1/T_i sum_t``.

Every tensor is allocated on the inputs' device and no value is read back to
the host, so the loss runs unchanged on CUDA (and on ``meta``, which the tests
use to prove it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LossTerms:
    """The loss and the diagnostics logged with it."""

    loss: torch.Tensor
    #: Detached diagnostics, on the loss's device (``float()`` them to log).
    surrogate: torch.Tensor
    kl: torch.Tensor
    clip_fraction: torch.Tensor


def per_trajectory_mean(
    values: torch.Tensor, trajectory_index: torch.Tensor, trajectories: int
) -> torch.Tensor:
    """Mean of per-turn ``values`` within each trajectory, then across trajectories.

    ``trajectories`` is the number of trajectories (indices run 0..trajectories-1);
    passing it avoids a device-to-host sync. Trajectories without turns are skipped.
    """
    zeros = torch.zeros(trajectories, dtype=values.dtype, device=values.device)
    sums = zeros.index_add(0, trajectory_index, values)
    counts = zeros.index_add(0, trajectory_index, torch.ones_like(values))
    present = (counts > 0).to(values.dtype)
    per_trajectory = sums / counts.clamp(min=1)
    return (per_trajectory * present).sum() / present.sum().clamp(min=1)


def flow_grpo_loss(
    logp_new: torch.Tensor,
    logp_old: torch.Tensor,
    logp_ref: torch.Tensor,
    advantages: torch.Tensor,
    trajectory_index: torch.Tensor,
    *,
    trajectories: int | None = None,
    clip_low: float = 0.2,
    clip_high: float = 0.3,
    kl_coef: float = 0.001,
) -> LossTerms:
    """``-mean min(rho*A, clip(rho, 1-clip_low, 1+clip_high)*A) + kl_coef * KL(pi || pi_ref)``.

    ``rho = exp(logp_new - logp_old)`` per turn. KL uses the non-negative k3
    estimator ``exp(ref - new) - (ref - new) - 1`` (GRPO's "low_var_kl").
    ``trajectories`` defaults to ``max(trajectory_index) + 1`` (one host sync).
    """
    if trajectories is None:
        trajectories = int(trajectory_index.max().item()) + 1
    ratio = torch.exp(logp_new - logp_old)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * advantages
    surrogate = torch.minimum(unclipped, clipped)
    log_ratio_ref = logp_ref - logp_new
    kl = torch.exp(log_ratio_ref) - log_ratio_ref - 1.0
    surrogate_mean = per_trajectory_mean(surrogate, trajectory_index, trajectories)
    kl_mean = per_trajectory_mean(kl, trajectory_index, trajectories)
    loss = -surrogate_mean + kl_coef * kl_mean
    clip_fraction = ((ratio < 1.0 - clip_low) | (ratio > 1.0 + clip_high)).float().mean()
    return LossTerms(
        loss=loss,
        surrogate=surrogate_mean.detach(),
        kl=kl_mean.detach(),
        clip_fraction=clip_fraction.detach(),
    )
