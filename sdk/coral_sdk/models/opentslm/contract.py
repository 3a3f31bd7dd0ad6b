"""What a trained OpenTSLM checkpoint can answer, and the check that refuses everything else.

A checkpoint is trained on one question type (the shipped ones: classify the
activity from a 3-axis accelerometer window among 8 labels). Asked anything
else ("what is the heart rate?", a 12-lead ECG, a sleep stage) it would still
emit one of its activity words, so the agent advertises the contract and
refuses what falls outside it with a reason that says what it can answer.

Reads only ``config.json`` (no torch), so the agent can advertise before it
loads the model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coral_sdk.models.opentslm.data import AXIS_NAMES, HAR_LABELS, HAR_PRE_PROMPT, HAR_SIGNAL

#: Words that mark a question as asking for the trained task (activity recognition).
_ACTIVITY_QUESTION = re.compile(
    r"\b(activit(y|ies)|doing|classify|classification|label|movement|motion)\b", re.IGNORECASE
)


class UnsupportedQuestion(ValueError):
    """A well-formed request outside what the checkpoint was trained to answer."""

    def __init__(self, detail: str, reason: str = "unsupported_question") -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class QuestionType:
    """One kind of question a checkpoint answers: its prompt, inputs and label set."""

    name: str
    prompt: str
    signal: str
    channel_names: tuple[str, ...]
    labels: tuple[str, ...]

    def describe(self) -> str:
        """One line for the agent's description and its refusals."""
        return (
            f"{self.name}: {self.signal} series with {len(self.channel_names)} channels "
            f"({', '.join(self.channel_names)}) -> one of {', '.join(self.labels)}"
        )


@dataclass(frozen=True)
class AnswerContract:
    """The question types a checkpoint answers (the shipped ones have exactly one)."""

    question_types: tuple[QuestionType, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        """Every label any question type can answer."""
        seen: dict[str, None] = {}
        for kind in self.question_types:
            seen.update(dict.fromkeys(kind.labels))
        return tuple(seen)

    def describe(self) -> str:
        """A sentence listing what can be asked."""
        kinds = "; ".join(kind.describe() for kind in self.question_types)
        return f"Answers only: {kinds}. Other questions are refused."

    def match(self, question: str | None, channels: int) -> QuestionType:
        """The question type a request falls under; ``UnsupportedQuestion`` says why none does."""
        for kind in self.question_types:
            if channels != len(kind.channel_names):
                continue
            if question is None or _same_text(question, kind.prompt):
                return kind
            if _ACTIVITY_QUESTION.search(question) and kind.name == "activity":
                return kind
        expected = {len(kind.channel_names) for kind in self.question_types}
        if channels not in expected:
            raise UnsupportedQuestion(
                f"got {channels} channel(s); this checkpoint was trained on "
                f"{' or '.join(str(n) for n in sorted(expected))}. {self.describe()}",
                reason="unsupported_series",
            )
        raise UnsupportedQuestion(f"cannot answer {question!r}. {self.describe()}")

    def as_dict(self) -> dict[str, Any]:
        """JSON form (for health and the agent's advertisement)."""
        return {
            "question_types": [
                {
                    "name": kind.name,
                    "prompt": kind.prompt,
                    "signal": kind.signal,
                    "channels": list(kind.channel_names),
                    "labels": list(kind.labels),
                }
                for kind in self.question_types
            ]
        }


def _same_text(left: str, right: str) -> bool:
    return " ".join(left.lower().split()) == " ".join(right.lower().split())


def har_contract(labels: Sequence[str] = HAR_LABELS) -> AnswerContract:
    """The shipped checkpoints' contract: activity from 3-axis accelerometer data."""
    return AnswerContract(
        (QuestionType("activity", HAR_PRE_PROMPT, HAR_SIGNAL, AXIS_NAMES, tuple(labels)),)
    )


def contract_from_config(config: dict[str, Any]) -> AnswerContract:
    """The contract a checkpoint's config records (``question_types``), else the HAR one."""
    kinds = config.get("question_types")
    if not kinds:
        return har_contract(config.get("labels") or HAR_LABELS)
    return AnswerContract(
        tuple(
            QuestionType(
                str(k["name"]),
                str(k["prompt"]),
                str(k.get("signal", "")),
                tuple(k["channels"]),
                tuple(k["labels"]),
            )
            for k in kinds
        )
    )


def read_contract(checkpoint: str | Path) -> AnswerContract:
    """The contract of a checkpoint directory (its ``config.json``)."""
    path = Path(checkpoint) / "config.json"
    config = json.loads(path.read_text("utf-8"))
    return contract_from_config(config if isinstance(config, dict) else {})
