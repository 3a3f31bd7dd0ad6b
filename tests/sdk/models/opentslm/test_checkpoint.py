"""Checkpoints round-trip exactly, and an interrupted run resumes to the same weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from coral_sdk.models.opentslm.checkpoint import (
    CheckpointError,
    build_model,
    load_checkpoint,
    save_checkpoint,
)
from coral_sdk.models.opentslm.data import SeriesSample
from coral_sdk.models.opentslm.training import TrainSettings, train_model

SETTINGS = {
    "encoder": {"dim": 16, "num_heads": 2, "num_layers": 1, "ff_dim": 32},
    "flamingo": {"depth": 1, "num_heads": 2, "dim_head": 8, "num_latents": 4},
}


@pytest.mark.parametrize("arch", ["softprompt", "flamingo", "text_baseline"])
def test_saved_checkpoint_reloads_to_identical_outputs(
    arch: str, tiny_backbone: Path, har_samples: list[SeriesSample], tmp_path: Path
) -> None:
    torch.manual_seed(1)
    model = build_model(arch, tiny_backbone, {**SETTINGS, "lora_rank": 4}, None)
    with torch.no_grad():
        for parameter in model.trainable_state().values():
            parameter.add_(torch.randn_like(parameter) * 0.05)  # make trained tensors non-default
    model.eval()
    save_checkpoint(model, tmp_path / arch, tiny_backbone, {"lora_rank": 4, **SETTINGS})
    loaded, config = load_checkpoint(tmp_path / arch)
    assert config["arch"] == arch
    with torch.no_grad():
        assert torch.equal(
            model.compute_loss(har_samples[:2]), loaded.compute_loss(har_samples[:2])
        )


def test_resumed_training_matches_an_uninterrupted_run(
    tiny_backbone: Path, har_samples: list[SeriesSample], tmp_path: Path
) -> None:
    def fresh() -> torch.nn.Module:
        torch.manual_seed(3)
        return build_model("flamingo", tiny_backbone, SETTINGS, None)

    full = fresh()
    train_model(
        full, har_samples, tmp_path / "full", tiny_backbone, TrainSettings(steps=6, batch_size=4)
    )

    def crash_after_third_step(step: int, _loss: float) -> None:
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(
            fresh(),
            har_samples,
            tmp_path / "split",
            tiny_backbone,
            TrainSettings(steps=6, batch_size=4, save_every=3),
            on_step=crash_after_third_step,
        )
    resumed = fresh()
    losses = train_model(
        resumed,
        har_samples,
        tmp_path / "split",
        tiny_backbone,
        TrainSettings(steps=6, batch_size=4, save_every=3),
    )
    assert len(losses) == 3
    for name, tensor in full.trainable_state().items():
        assert torch.allclose(tensor, resumed.trainable_state()[name], atol=1e-6), name


def test_loading_a_missing_or_foreign_checkpoint_fails_clearly(
    tiny_backbone: Path, tmp_path: Path
) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing")
    model = build_model("softprompt", tiny_backbone, SETTINGS, None)
    save_checkpoint(model, tmp_path / "sp", tiny_backbone, {"arch": "flamingo", **SETTINGS})
    with pytest.raises(CheckpointError, match="not in the model"):
        load_checkpoint(tmp_path / "sp")
