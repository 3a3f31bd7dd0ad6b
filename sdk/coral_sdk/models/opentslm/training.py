"""Training and evaluation loops: AdamW with warmup, gradient clipping, tqdm progress,
periodic resumable checkpoints, and accuracy / macro-F1 on the parsed final label.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from coral_sdk.models.opentslm.base import TimeSeriesLM
from coral_sdk.models.opentslm.checkpoint import load_training_state, save_checkpoint
from coral_sdk.models.opentslm.data import (
    HAR_LABELS,
    SeriesSample,
    classification_targets,
    parse_answer,
)
from coral_sdk.runtime.device import autocast_for

WARMUP_FRACTION = 0.03  # as in OpenTSLM's model_config
GRAD_CLIP_NORM = 1.0
WEIGHT_DECAY = 1e-2


@dataclass(frozen=True)
class TrainSettings:
    """How long and how fast to train."""

    steps: int = 400
    batch_size: int = 8
    learning_rate: float = 1e-3
    seed: int = 0
    save_every: int = 100


@dataclass(frozen=True)
class EvalReport:
    """Classification quality of generated answers."""

    accuracy: float
    macro_f1: float
    count: int
    unparsed: int
    seconds: float

    def as_dict(self) -> dict[str, float | int]:
        """JSON-ready figures."""
        return {
            "accuracy": round(self.accuracy, 4),
            "macro_f1": round(self.macro_f1, 4),
            "count": self.count,
            "unparsed": self.unparsed,
        }


def learning_rate_factor(step: int, total: int) -> float:
    """Linear warmup over the first 3% of steps, then cosine decay to 0."""
    warmup = max(1, int(total * WARMUP_FRACTION))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_model(
    model: TimeSeriesLM,
    samples: Sequence[SeriesSample],
    checkpoint_dir: Path,
    backbone_dir: Path,
    settings: TrainSettings,
    extra_config: dict[str, Any] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train the trainable parameters, resuming from ``checkpoint_dir`` if it holds a run.

    Batches are drawn from a generator seeded by (seed, step), so a resumed run sees the
    same batches as an uninterrupted one. Returns the losses of the steps run here.
    """
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=WEIGHT_DECAY)
    start = load_training_state(checkpoint_dir, optimizer) if checkpoint_dir.exists() else 0
    if start:
        from coral_sdk.models.opentslm.checkpoint import load_weights_into

        load_weights_into(model, checkpoint_dir)
    losses: list[float] = []
    model.train()
    progress = tqdm(
        range(start, settings.steps),
        desc=f"train {model.arch}",
        initial=start,
        total=settings.steps,
    )
    for step in progress:
        rng = np.random.default_rng([settings.seed, step])
        picked = rng.choice(
            len(samples), size=min(settings.batch_size, len(samples)), replace=False
        )
        for group in optimizer.param_groups:
            group["lr"] = settings.learning_rate * learning_rate_factor(step, settings.steps)
        # bf16 autocast on CUDA (a no-op on CPU); the loss itself is reduced in float32.
        with autocast_for(model.device):
            loss = model.compute_loss([samples[int(i)] for i in picked]).float()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(parameters, GRAD_CLIP_NORM)
        optimizer.step()
        losses.append(float(loss.item()))
        progress.set_postfix(loss=f"{losses[-1]:.3f}")
        done = step + 1
        if done % settings.save_every == 0 or done == settings.steps:
            save_checkpoint(model, checkpoint_dir, backbone_dir, extra_config, optimizer, done)
        if on_step is not None:
            on_step(step, losses[-1])
    model.eval()
    return losses


@dataclass(frozen=True)
class CurriculumStage:
    """One stage: ``classify`` trains on bare "Answer: <label>" targets, ``cot`` on rationales."""

    name: str
    settings: TrainSettings


def train_curriculum(
    model: TimeSeriesLM,
    samples: Sequence[SeriesSample],
    checkpoint_dir: Path,
    backbone_dir: Path,
    stages: Sequence[CurriculumStage],
    extra_config: dict[str, Any] | None = None,
) -> list[float]:
    """Run the stages in order, each starting from the previous stage's weights.

    Like OpenTSLM's curriculum (MCQ, captioning, then CoT), the short-answer stage teaches
    the encoder to carry the signal before long rationales dilute the gradient. Earlier
    stages checkpoint under ``checkpoint_dir/stage<i>-<name>``; the last in ``checkpoint_dir``.
    Returns the losses of the last stage.
    """
    losses: list[float] = []
    for index, stage in enumerate(stages):
        last = index == len(stages) - 1
        directory = checkpoint_dir if last else checkpoint_dir / f"stage{index}-{stage.name}"
        data = classification_targets(samples) if stage.name == "classify" else samples
        config = {**(extra_config or {}), "stage": stage.name}
        losses = train_model(model, data, directory, backbone_dir, stage.settings, config)
    return losses


def evaluate_model(
    model: TimeSeriesLM,
    samples: Sequence[SeriesSample],
    batch_size: int = 16,
    max_new_tokens: int = 48,
    labels: Sequence[str] = HAR_LABELS,
) -> EvalReport:
    """Generate a rationale per sample, parse "Answer: <label>", score accuracy and macro-F1."""
    started = time.perf_counter()
    predicted: list[str | None] = []
    model.eval()
    for begin in tqdm(range(0, len(samples), batch_size), desc=f"eval {model.arch}", leave=False):
        chunk = samples[begin : begin + batch_size]
        with torch.inference_mode(), autocast_for(model.device):
            texts = model.generate(chunk, max_new_tokens)
        for text in texts:
            predicted.append(parse_answer(text, labels))
    truth = [s.label or "" for s in samples]
    return EvalReport(
        accuracy=float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)])),
        macro_f1=macro_f1(truth, predicted, labels),
        count=len(samples),
        unparsed=sum(p is None for p in predicted),
        seconds=time.perf_counter() - started,
    )


def macro_f1(truth: Sequence[str], predicted: Sequence[str | None], labels: Sequence[str]) -> float:
    """Unweighted mean F1 over the labels present in ``truth`` (unparsed counts as wrong)."""
    scores = []
    for label in sorted(set(truth) & set(labels)):
        tp = sum(t == label and p == label for t, p in zip(truth, predicted, strict=True))
        fp = sum(t != label and p == label for t, p in zip(truth, predicted, strict=True))
        fn = sum(t == label and p != label for t, p in zip(truth, predicted, strict=True))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0
