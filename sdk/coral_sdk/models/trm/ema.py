"""Exponential moving average of weights (mu = 0.999), which the paper finds key on small data."""

from __future__ import annotations

import torch
from torch import nn


class WeightEma:
    """Shadow copy of a module's floating-point parameters, updated after each optimizer step."""

    def __init__(self, module: nn.Module, decay: float = 0.999) -> None:
        self.decay = decay
        self.shadow: dict[str, torch.Tensor] = {
            name: param.detach().clone() for name, param in module.named_parameters()
        }

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """``shadow = decay * shadow + (1 - decay) * param`` for every parameter."""
        for name, param in module.named_parameters():
            self.shadow[name].lerp_(param.detach(), 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Overwrite the module's parameters with the averaged ones."""
        for name, param in module.named_parameters():
            param.copy_(self.shadow[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shadow tensors, keyed like the module's parameters."""
        return dict(self.shadow)

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore shadow tensors saved by ``state_dict``."""
        missing = set(self.shadow) - set(tensors)
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)}")
        for name in self.shadow:
            self.shadow[name] = tensors[name].to(self.shadow[name].device).clone()
