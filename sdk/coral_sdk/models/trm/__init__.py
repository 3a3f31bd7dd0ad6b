"""TRM, the Tiny Recursive Model ("Less is More: Recursive Reasoning with Tiny Networks").

One tiny network improves a latent ``z`` and an answer ``y`` by recursion, under
deep supervision with a learned halting head. ``TrmSolver`` is the request
handler the agent wrapper calls; ``SHIPPED_CHECKPOINT`` is the small 6x6
minimal-Sudoku model trained on CPU that ships in the repository, next to a 4x4
one (see README.md).
Imports are lazy so that ``import coral_sdk.models.trm`` does not load torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coral_sdk.models.trm.config import TrainConfig, TrmConfig
    from coral_sdk.models.trm.model import TinyRecursiveModel
    from coral_sdk.models.trm.solver import MalformedPuzzle, ParsedPuzzle, TrmSolver

#: Shipped checkpoints: 6x6 minimal Sudoku (the default) and 4x4, each with its
#: no-recursion ablation (T=1, n=1, same parameters and budget; y and z still
#: carried across supervision steps). 6x6 also ships the ablation without any
#: recursion (``SHIPPED_SUDOKU6_NOCARRY``: T=1, n=1 and every supervision step
#: starts from the initial y, z, so each answer is one network application).
CHECKPOINTS_DIR = Path(__file__).parent / "checkpoints"
SHIPPED_SUDOKU4 = CHECKPOINTS_DIR / "sudoku4"
SHIPPED_SUDOKU4_ABLATION = CHECKPOINTS_DIR / "sudoku4-norec"
SHIPPED_SUDOKU6 = CHECKPOINTS_DIR / "sudoku6"
SHIPPED_SUDOKU6_ABLATION = CHECKPOINTS_DIR / "sudoku6-norec"
SHIPPED_SUDOKU6_NOCARRY = CHECKPOINTS_DIR / "sudoku6-nocarry"
SHIPPED_CHECKPOINT = SHIPPED_SUDOKU6
SHIPPED_ABLATION = SHIPPED_SUDOKU6_ABLATION

_LAZY = {
    "TrainConfig": "coral_sdk.models.trm.config",
    "TrmConfig": "coral_sdk.models.trm.config",
    "TinyRecursiveModel": "coral_sdk.models.trm.model",
    "MalformedPuzzle": "coral_sdk.models.trm.solver",
    "ParsedPuzzle": "coral_sdk.models.trm.solver",
    "TrmSolver": "coral_sdk.models.trm.solver",
}

__all__ = [
    "CHECKPOINTS_DIR",
    "SHIPPED_ABLATION",
    "SHIPPED_CHECKPOINT",
    "SHIPPED_SUDOKU4",
    "SHIPPED_SUDOKU4_ABLATION",
    "SHIPPED_SUDOKU6",
    "SHIPPED_SUDOKU6_ABLATION",
    "SHIPPED_SUDOKU6_NOCARRY",
    "MalformedPuzzle",
    "ParsedPuzzle",
    "TinyRecursiveModel",
    "TrainConfig",
    "TrmConfig",
    "TrmSolver",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'coral_sdk.models.trm' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
