"""Load real chain-of-thought time-series datasets from files a user already has.

Nothing is downloaded. Two formats are read:

* HAR-CoT CSV (as released by OpenTSLM: ``har_cot_{train,val,test}_cot.csv``): columns
  ``x_axis``, ``y_axis``, ``z_axis`` (each a Python/JSON list literal of floats), ``label``
  and ``rationale`` (ending in "Answer: <label>"). Repeated header rows are skipped.
* JSON Lines for any dataset, e.g. Sleep-CoT (one EEG channel, labels W/N1/N2/N3/REM) or
  ECG-QA-CoT (12 leads) once exported: one object per line with ``series`` (list of
  channels), optional ``series_names``, optional ``signal`` (what was measured, e.g.
  "EEG" or "ECG": it goes into each series' description), optional ``question``,
  ``rationale`` and ``label``. Without ``signal`` a series is described by its name only
  (never as accelerometer data); without ``question`` the pre-prompt asks to classify the
  series among the labels that occur in the file.
"""

from __future__ import annotations

import ast
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from coral_sdk.models.opentslm.data import (
    AXIS_NAMES,
    HAR_PRE_PROMPT,
    HAR_SIGNAL,
    SeriesSample,
    build_sample,
)

HAR_COT_COLUMNS = ("x_axis", "y_axis", "z_axis", "label", "rationale")


class DatasetFormatError(ValueError):
    """A local dataset file does not have the documented layout; the message says where."""


def load_local_dataset(path: str | Path) -> list[SeriesSample]:
    """Read a HAR-CoT ``.csv`` or a ``.jsonl`` file into samples (format chosen by suffix)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {path} not found")
    if path.suffix.lower() == ".csv":
        return load_har_cot_csv(path)
    if path.suffix.lower() in (".jsonl", ".json"):
        return load_cot_jsonl(path)
    raise DatasetFormatError(f"{path.name}: expected a .csv (HAR-CoT) or .jsonl file")


def load_har_cot_csv(path: Path) -> list[SeriesSample]:
    """Samples from a HAR-CoT CSV file (see the module docstring for the columns)."""
    # Series cells are long list literals; lift the csv module's 128 KiB field cap.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    samples = []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in HAR_COT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetFormatError(f"{path.name}: missing columns {missing}")
        for line, row in enumerate(reader, start=2):
            if row["x_axis"] == "x_axis":
                continue  # the released files repeat the header inside the data
            axes = [_parse_list(row[c], path, line, c) for c in HAR_COT_COLUMNS[:3]]
            samples.append(_sample(axes, AXIS_NAMES, HAR_PRE_PROMPT, row, path, line, HAR_SIGNAL))
    return samples


def load_cot_jsonl(path: Path) -> list[SeriesSample]:
    """Samples from JSON Lines with series, optional names/question, rationale and label."""
    records: list[tuple[int, dict[str, Any]]] = []
    with path.open() as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(f"{path.name}:{line}: not JSON ({exc.msg})") from exc
            series = record.get("series")
            if not isinstance(series, list) or not series:
                raise DatasetFormatError(f"{path.name}:{line}: 'series' must be a list of channels")
            signal = record.get("signal")
            if signal is not None and (not isinstance(signal, str) or not signal.strip()):
                raise DatasetFormatError(f"{path.name}:{line}: 'signal' must be a non-empty string")
            records.append((line, record))
    labels = sorted({str(r.get("label", "")).strip() for _, r in records} - {""})
    default_question = (
        "Classify the time series. Labels: " + ", ".join(labels) + ". End with Answer: <label>."
    )
    samples = []
    for line, record in records:
        channels = [np.asarray(c, dtype=np.float64) for c in record["series"]]
        names = record.get("series_names") or [f"channel {i + 1}" for i in range(len(channels))]
        question = record.get("question") or default_question
        signal = record.get("signal")
        samples.append(
            _sample(channels, names, question, record, path, line, signal and signal.strip())
        )
    return samples


def _sample(
    channels: list[np.ndarray],
    names: Any,
    question: str,
    row: Any,
    path: Path,
    line: int,
    signal: str | None,
) -> SeriesSample:
    label = str(row.get("label", "")).strip()
    rationale = str(row.get("rationale", "")).strip()
    if not label or not rationale:
        raise DatasetFormatError(f"{path.name}:{line}: 'label' and 'rationale' are required")
    if "Answer:" not in rationale:
        rationale = f"{rationale} Answer: {label}"
    if len(names) != len(channels):
        raise DatasetFormatError(
            f"{path.name}:{line}: {len(names)} names for {len(channels)} series"
        )
    for channel in channels:
        if channel.size == 0 or not np.isfinite(channel).all():
            raise DatasetFormatError(f"{path.name}:{line}: empty or non-finite series")
    return build_sample(
        channels, names, question=question, answer=rationale, label=label, signal=signal
    )


def _parse_list(cell: str, path: Path, line: int, column: str) -> np.ndarray:
    try:
        values = ast.literal_eval(cell)
    except (ValueError, SyntaxError) as exc:
        raise DatasetFormatError(f"{path.name}:{line}: column {column} is not a list") from exc
    if not isinstance(values, list | tuple):
        raise DatasetFormatError(f"{path.name}:{line}: column {column} is not a list")
    return np.asarray(values, dtype=np.float64)
