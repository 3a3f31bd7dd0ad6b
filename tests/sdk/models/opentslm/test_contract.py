"""The answer contract: what a checkpoint advertises, and what it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coral_sdk.agents.opentslm_agent import default_checkpoint
from coral_sdk.models.opentslm.contract import (
    UnsupportedQuestion,
    contract_from_config,
    har_contract,
    read_contract,
)
from coral_sdk.models.opentslm.data import HAR_LABELS, HAR_PRE_PROMPT


def test_shipped_checkpoint_advertises_the_activity_labels() -> None:
    contract = read_contract(default_checkpoint("softprompt"))
    assert contract.labels == HAR_LABELS
    text = contract.describe()
    assert text.startswith("Answers only: activity: accelerometer series with 3 channels (x, y, z)")
    assert all(label in text for label in HAR_LABELS)


@pytest.mark.parametrize(
    "question",
    [None, HAR_PRE_PROMPT, "  " + HAR_PRE_PROMPT.upper(), "What activity is this?", "Classify it"],
)
def test_activity_questions_on_three_axes_are_accepted(question: str | None) -> None:
    kind = har_contract().match(question, 3)
    assert kind.name == "activity" and kind.prompt == HAR_PRE_PROMPT


@pytest.mark.parametrize(
    ("question", "channels", "reason"),
    [
        ("What is the heart rate?", 3, "unsupported_question"),
        ("Which sleep stage is this?", 3, "unsupported_question"),
        ("What activity is this?", 12, "unsupported_series"),
        (None, 1, "unsupported_series"),
    ],
)
def test_other_questions_are_refused_with_the_contract(
    question: str | None, channels: int, reason: str
) -> None:
    with pytest.raises(UnsupportedQuestion) as caught:
        har_contract().match(question, channels)
    assert caught.value.reason == reason
    assert "Answers only: activity" in caught.value.detail
    assert isinstance(caught.value, ValueError)


def test_a_checkpoint_can_record_its_own_question_types(tmp_path: Path) -> None:
    config = {
        "question_types": [
            {
                "name": "sleep_stage",
                "prompt": "Which sleep stage?",
                "signal": "EEG",
                "channels": ["Fpz-Cz"],
                "labels": ["W", "N1", "N2", "N3", "REM"],
            }
        ]
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    contract = read_contract(tmp_path)
    assert contract.labels == ("W", "N1", "N2", "N3", "REM")
    assert contract.match("Which sleep stage?", 1).signal == "EEG"
    with pytest.raises(UnsupportedQuestion):
        contract.match("What activity is this?", 1)
    assert contract_from_config({"labels": ["a", "b"]}).labels == ("a", "b")
