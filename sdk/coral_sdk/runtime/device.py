"""Choose where a model runs, and the matching mixed-precision context."""

from __future__ import annotations

import contextlib

import torch


class DeviceUnavailable(RuntimeError):
    """The caller asked for a device this machine does not have."""


def pick_device(prefer: str | None = None) -> torch.device:
    """Return ``prefer`` if given (checked to exist), else CUDA when available, else CPU.

    ``prefer`` accepts any torch device string ("cpu", "cuda", "cuda:1", "auto").
    Raises ``DeviceUnavailable`` for a CUDA request on a machine without CUDA.
    """
    if prefer is None or prefer == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(prefer)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"device {prefer!r} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailable(
                f"device {prefer!r} requested; only {torch.cuda.device_count()} CUDA devices"
            )
    return device


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on CUDA (the paper trains in bf16); a no-op context elsewhere.

    CPU stays float32: bf16 matmuls on most CPUs are slower and less accurate.
    """
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
