"""OpenTSLM: time series + text -> text, as SoftPrompt and Flamingo over a causal LM backbone.

After "OpenTSLM: Time-Series Language Models for Reasoning over Multivariate Medical Text-
and Time-Series Data" (Langer et al., 2025). The serving entry point is ``OpenTslmPredictor``;
training and evaluation are ``coral-agent train|eval opentslm``. Needs the ``models`` extra;
imports are lazy so ``import coral_sdk.models.opentslm`` (and the CLI's ``--help``) work
without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coral_sdk.models.opentslm.predictor import (
        InvalidSeriesRequest,
        OpenTslmPredictor,
        SeriesRequest,
        parse_request,
    )

__all__ = ["InvalidSeriesRequest", "OpenTslmPredictor", "SeriesRequest", "parse_request"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'coral_sdk.models.opentslm' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module("coral_sdk.models.opentslm.predictor"), name)
