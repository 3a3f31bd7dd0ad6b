"""Checkpoint directories: safetensors weights plus JSON config and training state.

Layout of ``<dir>/``: ``config.json`` (model + training config), ``state.json``
(step, elapsed time, RNG state, metrics history), ``model.safetensors`` (raw
weights), ``ema.safetensors`` (averaged weights, used for inference) and
``optimizer.safetensors`` (AdamW moments, for ``--resume``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field

from coral_sdk.models.trm.config import TrainConfig, TrmConfig
from coral_sdk.models.trm.model import TinyRecursiveModel
from coral_sdk.runtime.weights import load_weights, save_weights

CONFIG_FILE = "config.json"
STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"


class CheckpointConfig(BaseModel):
    """What ``config.json`` holds: enough to rebuild the model and the run."""

    model: TrmConfig
    train: TrainConfig


class TrainState(BaseModel):
    """Progress of a run, saved alongside the weights so training can resume."""

    step: int = 0
    elapsed_s: float = 0.0
    numpy_rng: dict[str, Any] = Field(default_factory=dict)
    optimizer_groups: list[dict[str, Any]] = Field(default_factory=list)
    history: list[dict[str, float]] = Field(default_factory=list)


class CheckpointError(ValueError):
    """A checkpoint directory is missing or incomplete."""


def _write_json(path: Path, payload: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(payload + "\n")
    os.replace(tmp, path)


def _flatten_optimizer(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    flat: dict[str, torch.Tensor] = {}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            flat[f"{index}.{key}"] = torch.as_tensor(value)
    return flat


def _unflatten_optimizer(flat: dict[str, torch.Tensor]) -> dict[int, dict[str, torch.Tensor]]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in flat.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return state


def save_checkpoint(
    directory: str | os.PathLike[str],
    model: TinyRecursiveModel,
    train_config: TrainConfig,
    state: TrainState,
    *,
    ema: dict[str, torch.Tensor] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Write a checkpoint; weights first and ``state.json`` last, so a crash keeps the old one."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    config = CheckpointConfig(model=model.config, train=train_config)
    _write_json(root / CONFIG_FILE, config.model_dump_json(indent=2))
    save_weights(model.state_dict(), root / MODEL_FILE)
    if ema is not None:
        save_weights(ema, root / EMA_FILE)
    if optimizer is not None:
        opt_state = optimizer.state_dict()
        save_weights(_flatten_optimizer(opt_state), root / OPTIMIZER_FILE)
        state = state.model_copy(update={"optimizer_groups": opt_state["param_groups"]})
    _write_json(root / STATE_FILE, state.model_dump_json(indent=2))
    return root


def read_config(directory: str | os.PathLike[str]) -> CheckpointConfig:
    """Parse ``config.json`` of a checkpoint directory."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a TRM checkpoint (no {CONFIG_FILE})")
    return CheckpointConfig.model_validate_json(path.read_text())


def read_state(directory: str | os.PathLike[str]) -> TrainState:
    """Parse ``state.json`` (an empty state when absent)."""
    path = Path(directory) / STATE_FILE
    return TrainState.model_validate_json(path.read_text()) if path.is_file() else TrainState()


def load_model(
    directory: str | os.PathLike[str],
    device: torch.device | str = "cpu",
    *,
    use_ema: bool = True,
) -> tuple[TinyRecursiveModel, CheckpointConfig]:
    """Rebuild the model from a checkpoint, with EMA weights when present (eval mode)."""
    root = Path(directory)
    config = read_config(root)
    model = TinyRecursiveModel(config.model)
    if not (root / MODEL_FILE).is_file():
        raise CheckpointError(f"{directory} lacks {MODEL_FILE}")
    model.load_state_dict(load_weights(root / MODEL_FILE))
    if use_ema and (root / EMA_FILE).is_file():
        averaged = load_weights(root / EMA_FILE)
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.copy_(averaged[name])
    return model.to(device).eval(), config


def load_optimizer_state(
    directory: str | os.PathLike[str], optimizer: torch.optim.Optimizer, state: TrainState
) -> None:
    """Restore AdamW moments and param-group settings saved by ``save_checkpoint``."""
    path = Path(directory) / OPTIMIZER_FILE
    if not path.is_file():
        raise CheckpointError(f"cannot resume: {path} is missing")
    device = optimizer.param_groups[0]["params"][0].device
    slots = _unflatten_optimizer(load_weights(path, device))
    # AdamW keeps "step" on CPU unless capturable; match what it would create.
    for per_param in slots.values():
        if "step" in per_param:
            per_param["step"] = per_param["step"].cpu()
    optimizer.load_state_dict({"state": slots, "param_groups": state.optimizer_groups})


def read_ema(directory: str | os.PathLike[str]) -> dict[str, torch.Tensor] | None:
    """EMA tensors of a checkpoint, or None when it has none."""
    path = Path(directory) / EMA_FILE
    return load_weights(path) if path.is_file() else None


def describe(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON-able summary (config, step, last metrics) for logs and the CLI."""
    config = read_config(directory)
    state = read_state(directory)
    summary: dict[str, Any] = json.loads(config.model_dump_json())
    summary["step"] = state.step
    summary["elapsed_s"] = state.elapsed_s
    summary["last_metrics"] = state.history[-1] if state.history else {}
    return summary
