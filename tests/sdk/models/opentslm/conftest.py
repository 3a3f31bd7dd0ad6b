"""Shared OpenTSLM fixtures: one torch thread, and a tiny backbone built once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from coral_sdk.models.opentslm.backbone import BackboneShape, build_small_backbone
from coral_sdk.models.opentslm.data import SeriesSample, make_har_samples

SHIPPED = Path(__file__).resolve().parents[4] / "sdk/coral_sdk/models/opentslm/checkpoints"


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread() -> Iterator[None]:
    # The test machine's two cores are shared; more threads only adds contention.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def har_samples() -> list[SeriesSample]:
    """A small balanced synthetic HAR set (length 32 keeps everything fast)."""
    return make_har_samples(32, length=32, seed=7)


@pytest.fixture(scope="session")
def tiny_backbone(
    tmp_path_factory: pytest.TempPathFactory, har_samples: list[SeriesSample]
) -> Path:
    """A 1-layer LLaMA backbone + tokenizer saved to a temp dir (barely pretrained)."""
    directory = tmp_path_factory.mktemp("backbone")
    torch.manual_seed(0)
    shape = BackboneShape(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    build_small_backbone(directory, har_samples, shape=shape, pretrain_steps=3, batch_size=4)
    return directory
