"""The checkpoints shipped in the repo still score what their results.json records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from coral_sdk.models.opentslm.checkpoint import load_checkpoint
from coral_sdk.models.opentslm.data import HAR_LABELS, make_har_samples, synthesize_accelerometer
from coral_sdk.models.opentslm.predictor import OpenTslmPredictor
from coral_sdk.models.opentslm.ship import SERIES_LENGTH, TEST_SEED
from coral_sdk.models.opentslm.training import evaluate_model

from .conftest import SHIPPED

# Greedy decoding is deterministic; the margin only absorbs float differences across CPUs.
MARGIN = 0.03
RECORDED = (
    json.loads((SHIPPED / "results.json").read_text())
    if (SHIPPED / "results.json").exists()
    else {}
)


def test_all_shipped_architectures_have_recorded_figures() -> None:
    assert set(RECORDED) == {"softprompt", "flamingo", "text_baseline"}
    assert (SHIPPED / "backbone" / "config.json").is_file()


@pytest.mark.parametrize("arch", ["softprompt", "flamingo"])
def test_shipped_checkpoint_scores_at_least_its_recorded_figures(arch: str) -> None:
    recorded = RECORDED[arch]
    model, _ = load_checkpoint(SHIPPED / arch)
    samples = make_har_samples(recorded["count"], SERIES_LENGTH, seed=TEST_SEED)
    report = evaluate_model(model, samples, batch_size=32)
    assert report.accuracy >= recorded["accuracy"] - MARGIN
    assert report.macro_f1 >= recorded["macro_f1"] - MARGIN


@pytest.mark.parametrize("arch", ["softprompt", "flamingo"])
def test_shipped_predictor_batched_equals_unbatched(arch: str) -> None:
    predictor = OpenTslmPredictor.from_checkpoint(SHIPPED / arch, device="cpu")
    rng = np.random.default_rng(5)
    windows = [synthesize_accelerometer(a, SERIES_LENGTH, rng) for a in HAR_LABELS[:6]]
    requests = [{"series": w.tolist()} for w in windows]
    requests[1] = {"series": windows[1][:, :20].tolist()}  # a shorter window in the same batch
    batched = predictor.predict_batch(requests)
    single = [predictor.predict(r) for r in requests]
    assert batched == single
    # full-length windows are in the training distribution and get a parsed label
    assert all(answer["label"] for i, answer in enumerate(batched) if i != 1)
