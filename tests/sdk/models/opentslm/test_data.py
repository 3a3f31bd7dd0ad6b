"""Sample layout, z-normalisation and the synthetic HAR generator."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coral_sdk.models.opentslm.data import (
    HAR_LABELS,
    build_sample,
    make_har_samples,
    parse_answer,
    synthesize_accelerometer,
    zscore,
)


@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=64))
@settings(max_examples=50, deadline=None)
def test_zscore_round_trips_through_the_stats_written_in_the_text(values: list[float]) -> None:
    normalised, mean, std = zscore(np.asarray(values))
    restored = normalised.astype(np.float64) * max(std, 1e-6) + mean
    assert np.allclose(restored, values, atol=1e-3 * (1 + np.abs(values).max()))


def test_flat_series_normalises_to_zeros_not_nan() -> None:
    normalised, mean, std = zscore(np.full(16, 3.0))
    assert np.all(normalised == 0.0)
    assert (mean, std) == (3.0, 0.0)


def test_sample_text_carries_mean_and_std_of_each_axis() -> None:
    raw = [np.arange(8.0), np.ones(8) * 2, np.array([0.0, 2.0] * 4)]
    sample = build_sample(raw)
    assert "x axis, it has mean 3.5000 and std 2.2913:" in sample.series_texts[0]
    assert "mean 2.0000 and std 0.0000" in sample.series_texts[1]
    assert sample.post_prompt == "Rationale:"
    assert all(abs(float(s.mean())) < 1e-6 for s in sample.series)


def test_synthetic_set_is_balanced_and_rationales_end_with_the_label() -> None:
    samples = make_har_samples(40, length=64, seed=3)
    labels = [s.label for s in samples]
    assert sorted(set(labels)) == sorted(HAR_LABELS)
    assert all(labels.count(label) == 5 for label in HAR_LABELS)
    for sample in samples:
        assert sample.answer is not None and sample.answer.endswith(f"Answer: {sample.label}")
        assert [len(s) for s in sample.series] == [64, 64, 64]


def test_activities_differ_in_intensity_as_designed() -> None:
    rng = np.random.default_rng(0)
    spread = {a: float(synthesize_accelerometer(a, 128, rng)[1].std()) for a in HAR_LABELS}
    assert spread["running"] > spread["walking"] > spread["standing"]
    assert spread["lying"] < 0.05


def test_parse_answer_takes_the_last_answer_and_rejects_unknown_labels() -> None:
    assert parse_answer("Answer: walking. Actually Answer: walking_up") == "walking_up"
    assert parse_answer("it is Answer : Lying") == "lying"
    assert parse_answer("no answer here") is None
    assert parse_answer("Answer: dancing") is None
    assert parse_answer("Answer: rem", ["W", "N1", "REM"]) == "REM"


def test_unknown_activity_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown activity"):
        synthesize_accelerometer("swimming", 16, np.random.default_rng(0))
