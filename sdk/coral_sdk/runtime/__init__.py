"""Model runtime shared by the SDK's model agents: device choice, weights, batching.

``DynamicBatcher`` and its stats need only the standard library (plus
prometheus-client when a registry is given); ``pick_device`` and the weight
helpers need torch and safetensors (the ``models`` extra) and load lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coral_sdk.runtime.batcher import BatcherClosed, BatcherStats, DynamicBatcher
from coral_sdk.runtime.continuous import ContinuousBatcher, ContinuousStats, StepBatch

if TYPE_CHECKING:
    from coral_sdk.runtime.device import autocast_for, pick_device
    from coral_sdk.runtime.weights import load_module, load_weights, save_module, save_weights

__all__ = [
    "BatcherClosed",
    "BatcherStats",
    "ContinuousBatcher",
    "ContinuousStats",
    "DynamicBatcher",
    "StepBatch",
    "autocast_for",
    "load_module",
    "load_weights",
    "pick_device",
    "save_module",
    "save_weights",
]

_LAZY = {
    "autocast_for": "coral_sdk.runtime.device",
    "pick_device": "coral_sdk.runtime.device",
    "load_module": "coral_sdk.runtime.weights",
    "load_weights": "coral_sdk.runtime.weights",
    "save_module": "coral_sdk.runtime.weights",
    "save_weights": "coral_sdk.runtime.weights",
}


def __getattr__(name: str) -> Any:
    # Keep `import coral_sdk.runtime` cheap and torch-free for batcher-only users.
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'coral_sdk.runtime' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
