"""Samples in the OpenTSLM prompt layout, and synthetic HAR-CoT-like accelerometer data.

A sample is a pre-prompt, one text line per series (with the series' mean and std,
because each series is z-normalised before the encoder sees it), the normalised series,
a post-prompt ("Rationale:") and, for training, a rationale ending in "Answer: <label>".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

HAR_LABELS: tuple[str, ...] = (
    "biking",
    "lying",
    "running",
    "sitting",
    "standing",
    "walking",
    "walking_down",
    "walking_up",
)
HAR_PRE_PROMPT = (
    "Classify the activity from accelerometer data in three axes. Labels: "
    + ", ".join(HAR_LABELS)
    + ". End with Answer: <label>."
)
HAR_POST_PROMPT = "Rationale:"
AXIS_NAMES: tuple[str, ...] = ("x", "y", "z")
SAMPLE_RATE_HZ = 50.0
# Below this the std is treated as zero, as in the reference loaders (avoids inf after scaling).
MIN_STD = 1e-6
ANSWER_PATTERN = re.compile(r"Answer\s*:\s*([A-Za-z0-9_\-]+)")


@dataclass(frozen=True)
class SeriesSample:
    """One prompt: text around z-normalised series, plus the answer when known."""

    pre_prompt: str
    series_texts: tuple[str, ...]
    series: tuple[np.ndarray, ...]
    post_prompt: str
    answer: str | None = None
    label: str | None = None


def zscore(series: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Return (normalised series, mean, std) of a 1-D series; a flat series becomes zeros."""
    values = np.asarray(series, dtype=np.float64)
    mean = float(values.mean())
    std = float(values.std())
    normalised = (values - mean) / max(std, MIN_STD)
    return normalised.astype(np.float32), mean, std


#: The signal HAR data is described as (``build_sample``'s default).
HAR_SIGNAL = "accelerometer"


def series_text(name: str, mean: float, std: float, signal: str | None = HAR_SIGNAL) -> str:
    """The text line that introduces one series; it carries the stats removed by z-scoring.

    ``signal`` names what was measured ("accelerometer", "EEG", "ECG"); the
    accelerometer's channels are axes, other signals' are channels (leads,
    electrodes). Without a signal the line names only the series.
    """
    stats = f"it has mean {mean:.4f} and std {std:.4f}:"
    if not signal:
        return f"The following is the {name} time series, {stats}"
    part = "axis" if signal == HAR_SIGNAL else "channel"
    return f"The following is the {signal} data on the {name} {part}, {stats}"


def build_sample(
    raw_series: Sequence[np.ndarray],
    names: Sequence[str] = AXIS_NAMES,
    question: str = HAR_PRE_PROMPT,
    answer: str | None = None,
    label: str | None = None,
    signal: str | None = HAR_SIGNAL,
) -> SeriesSample:
    """Z-normalise each channel and lay out the prompt the way OpenTSLM's QA datasets do.

    ``signal`` goes into every series' description (see ``series_text``).
    """
    normalised: list[np.ndarray] = []
    texts: list[str] = []
    for name, channel in zip(names, raw_series, strict=True):
        values, mean, std = zscore(channel)
        normalised.append(values)
        texts.append(series_text(name, mean, std, signal))
    return SeriesSample(question, tuple(texts), tuple(normalised), HAR_POST_PROMPT, answer, label)


def render_series_as_text(values: np.ndarray, decimals: int = 1) -> str:
    """Print a normalised series as numbers: the text-only baseline's view of the data."""
    return " ".join(f"{v:.{decimals}f}" for v in np.asarray(values, dtype=np.float64))


def parse_answer(text: str, labels: Sequence[str] = HAR_LABELS) -> str | None:
    """Return the label after the last "Answer:" in ``text``, or None when there is none."""
    found = ANSWER_PATTERN.findall(text)
    if not found:
        return None
    word: str = found[-1].strip()
    if not labels:
        return word
    canonical = {label.lower(): label for label in labels}
    return canonical.get(word.lower())


# --- synthetic accelerometer data ---------------------------------------------------------
# Gravity direction (g) per activity, in device axes; intensity and rhythm per activity.
# walking / walking_up / walking_down share posture and intensity ranges on purpose, so
# only the waveform (rhythm and impact shape), not the mean/std text, separates them.
_POSTURE: dict[str, tuple[float, float, float]] = {
    "biking": (0.55, 0.75, 0.3),
    "lying": (0.05, 0.1, 0.98),
    "running": (0.2, 0.95, 0.15),
    "sitting": (0.45, 0.8, 0.35),
    "standing": (0.1, 0.98, 0.1),
    "walking": (0.15, 0.97, 0.15),
    "walking_down": (0.15, 0.97, 0.15),
    "walking_up": (0.15, 0.97, 0.15),
}
# (step frequency Hz, vertical amplitude g, impact sharpness 0..1, noise g)
_MOTION: dict[str, tuple[float, float, float, float]] = {
    "biking": (1.2, 0.25, 0.0, 0.03),
    "lying": (0.0, 0.0, 0.0, 0.01),
    "running": (2.8, 0.9, 0.5, 0.08),
    "sitting": (0.0, 0.0, 0.0, 0.015),
    "standing": (0.0, 0.0, 0.0, 0.02),
    "walking": (1.9, 0.35, 0.2, 0.04),
    "walking_down": (2.1, 0.35, 0.9, 0.04),
    "walking_up": (1.5, 0.35, 0.0, 0.04),
}

_RATIONALES: dict[str, tuple[str, ...]] = {
    "biking": (
        "Smooth slow cycles on a tilted posture and no impacts suggest pedaling.",
        "A steady round rhythm without foot impacts suggests a seated cyclic motion.",
    ),
    "lying": (
        "The signal is flat and gravity lies along the z axis, so the body is horizontal.",
        "Almost no motion and a z mean near one point to a horizontal resting body.",
    ),
    "running": (
        "Large fast swings with strong impacts show the most vigorous motion.",
        "Strong impacts at a high step rate point to fast upright locomotion.",
    ),
    "sitting": (
        "The signal is flat and gravity is split between x and y, so the body is still and tilted.",
        "Almost no motion on a tilted posture points to a still seated body.",
    ),
    "standing": (
        "The signal is flat and gravity lies along the y axis, so the body is upright and still.",
        "Almost no motion on a fully upright posture points to a body at rest.",
    ),
    "walking": (
        "Even steps of moderate size with mild impacts suggest level locomotion.",
        "A regular step rhythm with soft impacts points to relaxed upright locomotion.",
    ),
    "walking_down": (
        "Quick steps that land with sharp spikes suggest stepping downward.",
        "Sharp landing spikes at a quick step rate point to going downward.",
    ),
    "walking_up": (
        "Slow effortful steps with smooth pushes suggest stepping upward.",
        "A slow step rhythm with smooth pushes and no spikes points to going upward.",
    ),
}


def rationale_for(label: str, rng: np.random.Generator) -> str:
    """A short chain-of-thought paragraph for ``label`` that ends with "Answer: <label>"."""
    options = _RATIONALES[label]
    return f"{options[int(rng.integers(len(options)))]} Answer: {label}"


def synthesize_accelerometer(label: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """A [3, length] accelerometer window (in g) for one activity, with jitter and noise."""
    if label not in _POSTURE:
        raise ValueError(f"unknown activity {label!r}")
    t = np.arange(length, dtype=np.float64) / SAMPLE_RATE_HZ
    posture = np.asarray(_POSTURE[label]) + rng.normal(0.0, 0.06, size=3)
    posture = posture / np.linalg.norm(posture)
    freq, amplitude, sharpness, noise = _MOTION[label]
    freq *= rng.uniform(0.85, 1.15)
    amplitude *= rng.uniform(0.7, 1.3)
    phase = rng.uniform(0, 2 * np.pi)
    window = np.tile(posture[:, None], (1, length))
    if freq > 0:
        cycle = np.sin(2 * np.pi * freq * t + phase)
        # Impacts: a narrow spike at each step; sharpness blends a smooth sine into spikes.
        spikes = np.maximum(cycle, 0.0) ** 12 * 2.5
        vertical = (1 - sharpness) * cycle + sharpness * spikes
        sway = np.sin(np.pi * freq * t + phase / 2)
        window[1] += amplitude * vertical
        window[0] += 0.35 * amplitude * sway
        window[2] += 0.25 * amplitude * np.cos(2 * np.pi * freq * t + phase)
    else:
        # Still postures: slow drift (breathing, fidgeting) so the series is not perfectly flat.
        drift = rng.uniform(0.2, 0.5)
        window += 0.01 * np.sin(2 * np.pi * drift * t + phase)[None, :]
    window += rng.normal(0.0, noise * rng.uniform(0.8, 1.2), size=window.shape)
    return window.astype(np.float32)


def classification_targets(samples: Sequence[SeriesSample]) -> list[SeriesSample]:
    """The same prompts with the bare "Answer: <label>" as target (the curriculum's first stage)."""
    return [replace(s, answer=f"Answer: {s.label}") for s in samples if s.label]


def make_har_samples(count: int, length: int = 128, seed: int = 0) -> list[SeriesSample]:
    """``count`` labelled synthetic HAR samples, classes balanced in round-robin order."""
    rng = np.random.default_rng(seed)
    samples: list[SeriesSample] = []
    for index in range(count):
        label = HAR_LABELS[index % len(HAR_LABELS)]
        window = synthesize_accelerometer(label, length, rng)
        samples.append(build_sample(list(window), answer=rationale_for(label, rng), label=label))
    order = rng.permutation(count)
    return [samples[i] for i in order]
