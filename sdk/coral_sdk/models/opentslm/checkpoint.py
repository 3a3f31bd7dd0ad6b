"""Checkpoints as a directory: config.json, model.safetensors and (while training) the
optimizer state, also in safetensors, so training resumes exactly where it stopped.

Only trainable tensors are stored; the frozen backbone is referenced by a path relative to
the checkpoint directory, so a checkpoint can be moved together with its backbone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from coral_sdk.models.opentslm.backbone import load_backbone
from coral_sdk.models.opentslm.base import TimeSeriesLM
from coral_sdk.models.opentslm.encoders import EncoderConfig
from coral_sdk.models.opentslm.flamingo_layers import FlamingoConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINING_STATE_FILE = "training_state.json"
ARCHITECTURES = ("softprompt", "flamingo", "text_baseline")


class CheckpointError(ValueError):
    """A checkpoint directory is missing files or does not match the model it is loaded into."""


def build_model(
    arch: str, backbone_dir: str | Path, settings: dict[str, Any], device: torch.device | None
) -> TimeSeriesLM:
    """Construct an untrained model of ``arch`` around the backbone in ``backbone_dir``."""
    from coral_sdk.models.opentslm.flamingo import OpenTslmFlamingo
    from coral_sdk.models.opentslm.softprompt import OpenTslmSoftPrompt
    from coral_sdk.models.opentslm.text_baseline import TextOnlyBaseline

    lm, tokenizer = load_backbone(backbone_dir, device)
    encoder = EncoderConfig(**settings.get("encoder", {}))
    model: TimeSeriesLM
    if arch == "softprompt":
        model = OpenTslmSoftPrompt(lm, tokenizer, encoder, lora_rank=settings.get("lora_rank", 0))
    elif arch == "flamingo":
        flamingo = FlamingoConfig(**settings.get("flamingo", {}))
        train_embeddings = settings.get("train_lm_embeddings", True)
        model = OpenTslmFlamingo(lm, tokenizer, encoder, flamingo, train_embeddings)
    elif arch == "text_baseline":
        model = TextOnlyBaseline(
            lm, tokenizer, settings.get("lora_rank", 16), settings.get("decimals", 1)
        )
    else:
        raise CheckpointError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")
    return model


def save_checkpoint(
    model: TimeSeriesLM,
    directory: Path,
    backbone_dir: Path,
    extra: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    step: int | None = None,
) -> None:
    """Write config, trainable weights and (if given) optimizer state + step, atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        **model.config_dict(),
        "backbone": os.path.relpath(backbone_dir.resolve(), directory.resolve()),
        **(extra or {}),
    }
    weights = {name: t.contiguous().cpu() for name, t in model.trainable_state().items()}
    _atomic(directory / WEIGHTS_FILE, lambda p: save_file(weights, str(p)))
    if optimizer is not None and step is not None:
        tensors, groups = _flatten_optimizer(optimizer)
        _atomic(directory / OPTIMIZER_FILE, lambda p: save_file(tensors, str(p)))
        state = {"step": step, "param_groups": groups}
        _atomic(directory / TRAINING_STATE_FILE, lambda p: p.write_text(json.dumps(state)))
    _atomic(directory / CONFIG_FILE, lambda p: p.write_text(json.dumps(config, indent=2)))


def read_config(directory: Path) -> dict[str, Any]:
    """The checkpoint's config.json as a dict."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    config: dict[str, Any] = json.loads(path.read_text())
    return config


def load_checkpoint(
    directory: str | Path,
    device: torch.device | None = None,
    backbone_dir: str | Path | None = None,
) -> tuple[TimeSeriesLM, dict[str, Any]]:
    """Rebuild the model a checkpoint was saved from and load its trained tensors."""
    directory = Path(directory)
    config = read_config(directory)
    backbone = Path(backbone_dir) if backbone_dir else directory / config["backbone"]
    model = build_model(config["arch"], backbone, config, device)
    load_weights_into(model, directory)
    model.eval()
    return model, config


def load_weights_into(model: TimeSeriesLM, directory: Path) -> None:
    """Copy a checkpoint's tensors into ``model``; every stored tensor must have a home."""
    tensors = load_file(str(directory / WEIGHTS_FILE), device=str(model.device))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if unexpected:
        raise CheckpointError(f"checkpoint tensors not in the model: {unexpected[:5]}")
    trainable = set(model.trainable_state())
    if not_loaded := sorted(trainable & set(missing)):
        raise CheckpointError(f"trainable tensors missing from checkpoint: {not_loaded[:5]}")


def load_training_state(directory: Path, optimizer: torch.optim.Optimizer) -> int:
    """Restore optimizer state and return the step to resume from (0 when there is none)."""
    state_path = directory / TRAINING_STATE_FILE
    if not state_path.is_file() or not (directory / OPTIMIZER_FILE).is_file():
        return 0
    state = json.loads(state_path.read_text())
    tensors = load_file(str(directory / OPTIMIZER_FILE))
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": state["param_groups"]})
    return int(state["step"])


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], Any]:
    state = optimizer.state_dict()
    tensors = {
        f"{index}.{name}": (value if torch.is_tensor(value) else torch.tensor(value)).cpu()
        for index, entries in state["state"].items()
        for name, value in entries.items()
    }
    return tensors, state["param_groups"]


def _atomic(path: Path, write: Any) -> None:
    # Write then rename, so an interrupted save never leaves a half-written checkpoint file.
    temporary = path.with_name(path.name + ".tmp")
    write(temporary)
    os.replace(temporary, path)
