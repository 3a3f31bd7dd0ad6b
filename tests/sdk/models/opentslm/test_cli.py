"""`coral-agent train|eval opentslm` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from coral_sdk.cli import build_parser, main
from coral_sdk.models.opentslm.checkpoint import OPTIMIZER_FILE, TRAINING_STATE_FILE, WEIGHTS_FILE


def test_parser_knows_the_opentslm_options() -> None:
    args = build_parser().parse_args(["train", "opentslm", "--arch", "flamingo", "--out", "x"])
    assert (args.arch, args.out, args.steps) == ("flamingo", Path("x"), 400)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "opentslm", "--arch", "gpt", "--out", "x"])


def test_train_resumes_then_eval_prints_accuracy_and_macro_f1(
    tiny_backbone: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    common = [
        "train",
        "opentslm",
        "--arch",
        "flamingo",
        "--out",
        str(out),
        "--backbone",
        str(tiny_backbone),
        "--train-samples",
        "16",
        "--series-length",
        "16",
        "--batch-size",
        "2",
        "--classify-steps",
        "1",
    ]
    assert main([*common, "--steps", "2"]) == 0
    assert {WEIGHTS_FILE, OPTIMIZER_FILE, TRAINING_STATE_FILE} <= {p.name for p in out.iterdir()}
    assert (out / "stage0-classify" / WEIGHTS_FILE).is_file()  # the curriculum's first stage
    first = load_file(str(out / WEIGHTS_FILE))
    assert main([*common, "--steps", "4"]) == 0
    assert json.loads((out / TRAINING_STATE_FILE).read_text())["step"] == 4
    assert any((first[k] != v).any() for k, v in load_file(str(out / WEIGHTS_FILE)).items())
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "opentslm",
                "--checkpoint",
                str(out),
                "--samples",
                "8",
                "--series-length",
                "16",
                "--json",
            ]
        )
        == 0
    )
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["arch"] == "flamingo" and figures["count"] == 8
    assert 0.0 <= figures["accuracy"] <= 1.0 and 0.0 <= figures["macro_f1"] <= 1.0
