"""Save and load model weights as safetensors files (no pickle, safe to share)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file


def save_weights(
    tensors: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``tensors`` to ``path`` atomically (temp file, then rename).

    A crash mid-write leaves the previous file intact, which matters for
    periodic training checkpoints. Tensors are copied to CPU and made contiguous.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # clone() breaks storage sharing, which safetensors refuses to serialize.
    cpu_tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    tmp = target.with_name(target.name + ".tmp")
    save_file(cpu_tensors, str(tmp), metadata=dict(metadata) if metadata else None)
    # safetensors creates owner-only files; weights are meant to be shared.
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)


def load_weights(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Read every tensor of a safetensors file onto ``device``."""
    return load_file(str(path), device=str(device))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """Return the string metadata stored in a safetensors file header."""
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def save_module(
    module: torch.nn.Module,
    path: str | os.PathLike[str],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Save a module's ``state_dict`` (parameters and persistent buffers)."""
    save_weights(module.state_dict(), path, metadata)


def load_module(
    module: torch.nn.Module, path: str | os.PathLike[str], *, strict: bool = True
) -> torch.nn.Module:
    """Load weights from ``path`` into ``module`` in place and return it.

    Tensors are loaded onto the device of the module's first parameter.
    """
    first = next(module.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    module.load_state_dict(load_weights(path, device), strict=strict)
    return module
