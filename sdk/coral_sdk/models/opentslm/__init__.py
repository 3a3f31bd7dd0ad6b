"""OpenTSLM: time series + text -> text, as SoftPrompt and Flamingo over a causal LM backbone.

After "OpenTSLM: Time-Series Language Models for Reasoning over Multivariate Medical Text-
and Time-Series Data" (Langer et al., 2025). The serving entry point is ``OpenTslmPredictor``;
training and evaluation are ``coral-agent train|eval opentslm``. Needs the ``models`` extra.
"""

from __future__ import annotations

from coral_sdk.models.opentslm.predictor import (
    InvalidSeriesRequest,
    OpenTslmPredictor,
    SeriesRequest,
    parse_request,
)

__all__ = ["InvalidSeriesRequest", "OpenTslmPredictor", "SeriesRequest", "parse_request"]
