"""Loading HAR-CoT CSV and JSON Lines files that a user has locally."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coral_sdk.models.opentslm.local_datasets import DatasetFormatError, load_local_dataset

HEADER = "x_axis,y_axis,z_axis,label,rationale\n"


def _har_row(label: str) -> str:
    axes = '"[0.1, 0.2, 0.3, 0.4]","[1.0, 1.0, 0.9, 1.1]","[0.0, 0.1, 0.0, 0.1]"'
    return f'{axes},{label},"Steady. Answer: {label}"\n'


def test_har_cot_csv_rows_become_prompt_samples(tmp_path: Path) -> None:
    path = tmp_path / "har_cot_test_cot.csv"
    # the released files repeat their header inside the data; it must be skipped
    path.write_text(HEADER + _har_row("walking") + HEADER + _har_row("lying"))
    samples = load_local_dataset(path)
    assert [s.label for s in samples] == ["walking", "lying"]
    assert samples[0].answer == "Steady. Answer: walking"
    assert "x axis, it has mean 0.2500" in samples[0].series_texts[0]
    assert [len(s) for s in samples[1].series] == [4, 4, 4]


def test_csv_without_required_columns_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("x_axis,label\n[1],a\n")
    with pytest.raises(DatasetFormatError, match="missing columns"):
        load_local_dataset(path)


def test_jsonl_records_for_sleep_or_ecg(tmp_path: Path) -> None:
    path = tmp_path / "sleep_cot.jsonl"
    records = [
        {
            "series": [[0.1, 0.5, 0.2, 0.9]],
            "series_names": ["EEG Fpz-Cz"],
            "label": "N2",
            "rationale": "Spindles are present.",
            "question": "Which sleep stage?",
        },
        {"series": [[1.0, 2.0], [2.0, 3.0]], "label": "REM", "rationale": "Fast. Answer: REM"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    samples = load_local_dataset(path)
    assert samples[0].answer == "Spindles are present. Answer: N2"
    assert samples[0].pre_prompt == "Which sleep stage?"
    assert "EEG Fpz-Cz" in samples[0].series_texts[0]
    assert "channel 2" in samples[1].series_texts[1]
    # Nothing here is accelerometer data, and no record claims it is.
    for sample in samples:
        assert not any("accelerometer" in text for text in sample.series_texts)
        assert "accelerometer" not in sample.pre_prompt
    # Without a question the pre-prompt lists the file's own labels.
    assert samples[1].pre_prompt.startswith("Classify the time series. Labels: N2, REM.")


def test_jsonl_signal_names_what_was_measured(tmp_path: Path) -> None:
    path = tmp_path / "ecg.jsonl"
    record = {
        "series": [[0.0, 1.0, 0.5], [1.0, 0.0, 0.2]],
        "series_names": ["lead I", "lead II"],
        "signal": "ECG",
        "label": "NORM",
        "rationale": "Regular rhythm.",
    }
    path.write_text(json.dumps(record) + "\n")
    sample = load_local_dataset(path)[0]
    assert sample.series_texts[0].startswith("The following is the ECG data on the lead I channel")
    assert sample.series_texts[1].startswith("The following is the ECG data on the lead II channel")
    path.write_text(json.dumps({**record, "signal": 3}) + "\n")
    with pytest.raises(DatasetFormatError, match="'signal'"):
        load_local_dataset(path)


def test_har_csv_series_stay_accelerometer_axes(tmp_path: Path) -> None:
    path = tmp_path / "har.csv"
    path.write_text(
        "x_axis,y_axis,z_axis,label,rationale\n"
        '"[0.1, 0.2]","[0.3, 0.1]","[0.9, 1.0]",sitting,Still. Answer: sitting\n'
    )
    sample = load_local_dataset(path)[0]
    assert sample.series_texts[0].startswith(
        "The following is the accelerometer data on the x axis"
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not JSON"),
        (json.dumps({"series": [], "label": "a", "rationale": "r"}), "'series'"),
        (json.dumps({"series": [[1.0]], "label": "", "rationale": "r"}), "required"),
        (
            json.dumps({"series": [[1.0, float("nan")]], "label": "a", "rationale": "r"}),
            "non-finite",
        ),
    ],
)
def test_malformed_jsonl_lines_name_the_problem(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(DatasetFormatError, match=message):
        load_local_dataset(path)
