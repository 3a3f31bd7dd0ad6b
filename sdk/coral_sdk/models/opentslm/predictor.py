"""The request handler the Coral agent glue calls: validate, batch, generate, parse.

A request is ``{"question": str, "series": [[float, ...], ...], "series_names": [...]}``
(one list per channel) or ``{"question": str, "file": "path.npy|path.csv"}``; the answer is
``{"rationale": str, "label": str}`` (label "" when the model gave no "Answer:" line).
"""

from __future__ import annotations

import csv
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coral_sdk.models.opentslm.base import TimeSeriesLM
from coral_sdk.models.opentslm.checkpoint import load_checkpoint
from coral_sdk.models.opentslm.data import (
    AXIS_NAMES,
    HAR_LABELS,
    HAR_PRE_PROMPT,
    HAR_SIGNAL,
    SeriesSample,
    build_sample,
    parse_answer,
)
from coral_sdk.models.opentslm.encoders import MAX_SERIES_LENGTH

MAX_CHANNELS = 16
MAX_QUESTION_CHARS = 4000


class InvalidSeriesRequest(ValueError):
    """A request the model cannot answer; the message says which field is wrong and why."""


@dataclass(frozen=True)
class SeriesRequest:
    """A validated request: a question and equal-length finite channels."""

    question: str
    channels: tuple[np.ndarray, ...]
    names: tuple[str, ...]
    #: What was measured, for the series descriptions (the trained data's by default).
    signal: str = HAR_SIGNAL


def parse_request(data: Any) -> SeriesRequest:
    """Validate a request dict; raise ``InvalidSeriesRequest`` with a clear message if it is bad."""
    if not isinstance(data, Mapping):
        raise InvalidSeriesRequest(f"request must be a JSON object, got {type(data).__name__}")
    question = data.get("question", HAR_PRE_PROMPT)
    if not isinstance(question, str) or not question.strip():
        raise InvalidSeriesRequest("'question' must be a non-empty string")
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidSeriesRequest(f"'question' is longer than {MAX_QUESTION_CHARS} characters")
    if ("series" in data) == ("file" in data):
        raise InvalidSeriesRequest("give exactly one of 'series' (list of channels) or 'file'")
    raw = _read_series_file(data["file"]) if "file" in data else data["series"]
    channels = _validate_channels(raw)
    names = _validate_names(data.get("series_names"), len(channels))
    signal = data.get("signal", HAR_SIGNAL)
    if not isinstance(signal, str) or not signal.strip():
        raise InvalidSeriesRequest("'signal' must be a non-empty string such as 'accelerometer'")
    return SeriesRequest(question.strip(), channels, names, signal.strip())


def _validate_channels(raw: Any) -> tuple[np.ndarray, ...]:
    if not isinstance(raw, list | tuple) or not raw:
        raise InvalidSeriesRequest(
            "'series' must be a non-empty list of channels (lists of numbers)"
        )
    if all(_is_number(v) for v in raw):
        raw = [raw]  # a single flat list is one channel
    if len(raw) > MAX_CHANNELS:
        raise InvalidSeriesRequest(f"'series' has {len(raw)} channels, at most {MAX_CHANNELS}")
    channels = []
    for index, channel in enumerate(raw):
        if not isinstance(channel, list | tuple):
            raise InvalidSeriesRequest(f"series[{index}] must be a list of numbers")
        if not channel:
            raise InvalidSeriesRequest(f"series[{index}] is empty")
        if not all(_is_number(v) for v in channel):
            raise InvalidSeriesRequest(f"series[{index}] must contain only numbers")
        if len(channel) > MAX_SERIES_LENGTH:
            raise InvalidSeriesRequest(
                f"series[{index}] has {len(channel)} samples, at most {MAX_SERIES_LENGTH}"
            )
        if not all(math.isfinite(float(v)) for v in channel):
            raise InvalidSeriesRequest(f"series[{index}] contains NaN or infinite values")
        channels.append(np.asarray(channel, dtype=np.float64))
    lengths = {len(c) for c in channels}
    if len(lengths) > 1:
        raise InvalidSeriesRequest(f"channels have different lengths: {sorted(lengths)}")
    return tuple(channels)


def _validate_names(names: Any, count: int) -> tuple[str, ...]:
    if names is None:
        return (
            AXIS_NAMES
            if count == len(AXIS_NAMES)
            else tuple(f"channel {i + 1}" for i in range(count))
        )
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) and n for n in names):
        raise InvalidSeriesRequest("'series_names' must be a list of non-empty strings")
    if len(names) != count:
        raise InvalidSeriesRequest(f"'series_names' has {len(names)} names for {count} channels")
    return tuple(names)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _read_series_file(path_value: Any) -> list[list[float]]:
    """Channels from .npy ([channels, length] or 1-D) or .csv (one column per channel)."""
    if not isinstance(path_value, str) or not path_value:
        raise InvalidSeriesRequest("'file' must be a path string")
    path = Path(path_value)
    if not path.is_file():
        raise InvalidSeriesRequest(f"'file' {path_value!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
            if array.dtype.kind not in "iuf":
                raise InvalidSeriesRequest(f"{path.name} must hold numbers, not {array.dtype}")
            array = np.atleast_2d(np.asarray(array, dtype=np.float64))
            if array.ndim != 2:
                raise InvalidSeriesRequest(f"{path.name} must be 1-D or 2-D [channels, length]")
            rows: list[list[float]] = array.tolist()
            return rows
        if suffix == ".csv":
            return _read_csv_columns(path)
    except (OSError, ValueError) as exc:
        if isinstance(exc, InvalidSeriesRequest):
            raise
        raise InvalidSeriesRequest(f"cannot read {path.name}: {exc}") from exc
    raise InvalidSeriesRequest(f"'file' must end in .npy or .csv, got {suffix or 'no suffix'}")


def _read_csv_columns(path: Path) -> list[list[float]]:
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if rows and not all(_parses_as_float(cell) for cell in rows[0]):
        rows = rows[1:]  # header line
    if not rows:
        raise InvalidSeriesRequest(f"{path.name} has no data rows")
    try:
        values = [[float(cell) for cell in row] for row in rows]
    except ValueError as exc:
        raise InvalidSeriesRequest(f"{path.name} has a non-numeric cell: {exc}") from exc
    if len({len(row) for row in values}) > 1:
        raise InvalidSeriesRequest(f"{path.name} has rows with different numbers of columns")
    return [list(column) for column in zip(*values, strict=True)]


def _parses_as_float(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


class OpenTslmPredictor:
    """Answers series questions with a trained OpenTSLM checkpoint; safe to call from threads."""

    def __init__(
        self, model: TimeSeriesLM, labels: Sequence[str] = HAR_LABELS, max_new_tokens: int = 48
    ) -> None:
        self.model = model.eval()
        self.labels = tuple(labels)
        self.max_new_tokens = max_new_tokens
        # One forward at a time: Flamingo hands latents to its hooks through model state.
        self._lock = threading.Lock()

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device | None = None
    ) -> OpenTslmPredictor:
        """Load a checkpoint directory onto ``device`` (default: CUDA if present, else CPU)."""
        from coral_sdk.runtime.device import pick_device

        chosen = device if isinstance(device, torch.device) else pick_device(device)
        model, config = load_checkpoint(path, chosen)
        return cls(model, labels=config.get("labels", HAR_LABELS))

    def to_sample(self, request: SeriesRequest) -> SeriesSample:
        """Z-normalise and lay out a validated request like a training sample."""
        return build_sample(
            list(request.channels), request.names, question=request.question, signal=request.signal
        )

    def predict_batch(self, requests: list[dict[str, Any]]) -> list[dict[str, str]]:
        """Answer every request in one batched generation; invalid input raises before any work."""
        if not requests:
            return []
        samples = [self.to_sample(parse_request(r)) for r in requests]
        with self._lock:
            texts = self.model.generate(samples, self.max_new_tokens)
        return [{"rationale": t, "label": parse_answer(t, self.labels) or ""} for t in texts]

    def predict(self, request: dict[str, Any]) -> dict[str, str]:
        """Answer one request."""
        return self.predict_batch([request])[0]
