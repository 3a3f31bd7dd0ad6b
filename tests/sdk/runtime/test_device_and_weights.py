"""pick_device and the safetensors weight helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from coral_sdk.runtime import autocast_for, load_module, load_weights, pick_device, save_module
from coral_sdk.runtime.device import DeviceUnavailable
from coral_sdk.runtime.weights import read_metadata, save_weights


def test_pick_device_prefers_cuda_only_when_present() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device().type == expected
    assert pick_device("auto").type == expected
    assert pick_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error path")
def test_asking_for_missing_cuda_is_a_clear_error() -> None:
    with pytest.raises(DeviceUnavailable, match="CUDA is not available"):
        pick_device("cuda")


def test_autocast_is_a_no_op_on_cpu() -> None:
    with autocast_for(torch.device("cpu")):
        out = nn.Linear(2, 2)(torch.ones(1, 2))
    assert out.dtype == torch.float32


def test_module_weights_round_trip_through_safetensors(tmp_path: Path) -> None:
    source = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    path = tmp_path / "nested" / "weights.safetensors"
    save_module(source, path, metadata={"task": "demo"})
    target = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    load_module(target, path)
    for (name, a), (_, b) in zip(
        source.state_dict().items(), target.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert read_metadata(path) == {"task": "demo"}
    assert not (tmp_path / "nested" / "weights.safetensors.tmp").exists()
    assert os.stat(path).st_mode & 0o044  # readable by others, unlike safetensors' default


def test_shared_storage_tensors_are_saved_as_copies(tmp_path: Path) -> None:
    base = torch.arange(6.0)
    save_weights({"all": base, "view": base[:3]}, tmp_path / "w.safetensors")
    loaded = load_weights(tmp_path / "w.safetensors")
    assert loaded["view"].tolist() == [0.0, 1.0, 2.0]
    assert loaded["all"].tolist() == base.tolist()


def test_loading_mismatched_weights_fails_loudly(tmp_path: Path) -> None:
    save_module(nn.Linear(3, 4), tmp_path / "w.safetensors")
    with pytest.raises(RuntimeError):
        load_module(nn.Linear(3, 5), tmp_path / "w.safetensors")
