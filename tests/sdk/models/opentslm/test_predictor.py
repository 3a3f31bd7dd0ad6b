"""Request validation with typed errors, and the predictor's batch contract."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coral_sdk.models.opentslm.checkpoint import build_model, save_checkpoint
from coral_sdk.models.opentslm.predictor import (
    InvalidSeriesRequest,
    OpenTslmPredictor,
    parse_request,
)

GOOD = {"question": "What is the activity?", "series": [[0.1, 0.2, 0.3]] * 3}


@pytest.mark.parametrize(
    ("request_data", "message"),
    [
        ("not a dict", "JSON object"),
        ({"series": []}, "non-empty list"),
        ({"series": [[]]}, r"series\[0\] is empty"),
        ({"series": [[1.0, math.nan]]}, "NaN or infinite"),
        ({"series": [[1.0, math.inf]]}, "NaN or infinite"),
        ({"series": [[1.0, 2.0], [1.0]]}, "different lengths"),
        ({"series": [[0.0] * 4097]}, "at most 4096"),
        ({"series": [[1.0, "2"]]}, "only numbers"),
        ({"series": [[True, False]]}, "only numbers"),
        ({"series": "1,2,3"}, "non-empty list"),
        ({"series": [1.0, [2.0]]}, r"series\[0\] must be a list"),
        ({"question": 5, "series": [[1.0]]}, "'question'"),
        ({"question": "  ", "series": [[1.0]]}, "'question'"),
        ({"series": [[1.0]], "series_names": ["a", "b"]}, "2 names for 1 channels"),
        ({"series": [[1.0]], "series_names": [3]}, "series_names"),
        ({}, "exactly one of"),
        ({"series": [[1.0]], "file": "x.npy"}, "exactly one of"),
        ({"file": "/nonexistent/x.npy"}, "does not exist"),
        ({"file": 7}, "path string"),
    ],
)
def test_bad_requests_raise_the_typed_error(request_data: Any, message: str) -> None:
    with pytest.raises(InvalidSeriesRequest, match=message):
        parse_request(request_data)
    assert issubclass(InvalidSeriesRequest, ValueError)


def test_good_request_defaults_axis_names_and_accepts_a_flat_channel() -> None:
    parsed = parse_request(GOOD)
    assert parsed.names == ("x", "y", "z")
    assert len(parsed.channels) == 3
    single = parse_request({"series": [1.0, 2.0, 4.0]})
    assert single.names == ("channel 1",) and single.channels[0].tolist() == [1.0, 2.0, 4.0]


def test_series_can_come_from_npy_and_csv_files(tmp_path: Path) -> None:
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "window.npy", values)
    (tmp_path / "window.csv").write_text(
        "x,y,z\n" + "\n".join(",".join(map(str, r)) for r in values.T)
    )
    from_npy = parse_request({"file": str(tmp_path / "window.npy")})
    from_csv = parse_request({"file": str(tmp_path / "window.csv")})
    for parsed in (from_npy, from_csv):
        assert [c.tolist() for c in parsed.channels] == values.tolist()
    (tmp_path / "bad.csv").write_text("1,2\n3,oops\n")
    with pytest.raises(InvalidSeriesRequest, match="non-numeric"):
        parse_request({"file": str(tmp_path / "bad.csv")})
    (tmp_path / "w.txt").write_text("1")
    with pytest.raises(InvalidSeriesRequest, match=r"\.npy or \.csv"):
        parse_request({"file": str(tmp_path / "w.txt")})
    np.save(tmp_path / "nan.npy", np.array([1.0, np.nan]))
    with pytest.raises(InvalidSeriesRequest, match="NaN"):
        parse_request({"file": str(tmp_path / "nan.npy")})


@pytest.fixture(scope="module")
def predictor(tiny_backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> OpenTslmPredictor:
    directory = tmp_path_factory.mktemp("ckpt") / "softprompt"
    settings = {"encoder": {"dim": 16, "num_heads": 2, "num_layers": 1, "ff_dim": 32}}
    save_checkpoint(
        build_model("softprompt", tiny_backbone, settings, None), directory, tiny_backbone
    )
    return OpenTslmPredictor.from_checkpoint(directory, device="cpu")


def test_predict_batch_answers_each_request_and_rejects_bad_ones_first(
    predictor: OpenTslmPredictor,
) -> None:
    predictor.max_new_tokens = 6
    answers = predictor.predict_batch([GOOD, {"series": [[1.0, 2.0, 0.5, 3.0]] * 3}])
    assert len(answers) == 2
    assert all(
        set(a) == {"rationale", "label"} and isinstance(a["rationale"], str) for a in answers
    )
    with pytest.raises(InvalidSeriesRequest):
        predictor.predict_batch([GOOD, {"series": [[math.nan]]}])
    assert predictor.predict_batch([]) == []
