"""Short GPU check of the 9x9 TRM recipe: trains a few minutes, prints throughput, resumes.

Run on a machine with a CUDA GPU (no GPU was available where this was written):

    python scripts/trm_gpu_check.py --minutes 3

It generates 9x9 minimal Sudoku puzzles (reporting puzzles/s on one core),
trains the paper's recipe (preset ``sudoku9-paper``: TRM-MLP, hidden 512,
T=3, n=6, N_sup=16, EMA, augmentation, bf16 autocast) for ``--minutes``,
prints optimizer steps/s, puzzles/s and peak GPU memory, then resumes the
checkpoint for a few steps to prove checkpoint/resume. The full run is then

    coral-agent train trm --preset sudoku9-paper --out runs/trm-sudoku9 [--resume]

``--tiny --device cpu`` shrinks everything so the script itself can be tested
on a CPU in seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    """Run the check; exit status 2 when CUDA is asked for but missing."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="training time to measure")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--out", default="runs/trm-gpu-check", help="checkpoint directory")
    parser.add_argument("--data-cache", default="runs/data", help="generated-puzzle cache")
    parser.add_argument("--train-size", type=int, default=1000, help="9x9 puzzles to generate")
    parser.add_argument("--eval-size", type=int, default=200, help="held-out puzzles to score")
    parser.add_argument("--batch-size", type=int, default=None, help="override the preset's 768")
    parser.add_argument("--tiny", action="store_true", help="hidden 32, T=1/n=1: a CPU smoke test")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from coral_sdk.models.trm.cli import PRESETS
    from coral_sdk.models.trm.config import TrainConfig, TrmConfig
    from coral_sdk.models.trm.tasks import get_task, sudoku
    from coral_sdk.models.trm.training import train_trm
    from coral_sdk.runtime.device import DeviceUnavailable, pick_device

    try:
        device = pick_device(args.device)
    except DeviceUnavailable as exc:
        print(f"trm_gpu_check: {exc}; run it where a CUDA GPU is present", file=sys.stderr)
        return 2

    started = time.perf_counter()
    rng = np.random.default_rng(0)
    sample = 5 if args.tiny else 40
    for _ in range(sample):
        sudoku.generate_minimal(9, rng)
    per_core = sample / (time.perf_counter() - started)

    preset: dict[str, Any] = dict(PRESETS["sudoku9-paper"])
    task = get_task(preset.pop("task"))
    model_fields = set(TrmConfig.model_fields)
    model_values = {k: v for k, v in preset.items() if k in model_fields}
    train_values = {k: v for k, v in preset.items() if k not in model_fields}
    train_values.update(
        train_size=args.train_size,
        eval_size=args.eval_size,
        checkpoint_every=10**9,
        data_cache=args.data_cache,
    )
    if args.batch_size:
        train_values["batch_size"] = args.batch_size
    if args.tiny:
        model_values.update(hidden_size=32, num_heads=2, T=1, n=1, n_sup=2, puzzle_emb_len=1)
        train_values.update(batch_size=args.batch_size or 8, lr_warmup_steps=1)
    model_config = TrmConfig(vocab_size=task.vocab_size, seq_len=task.seq_len, **model_values)
    train_config = TrainConfig(task=task.name, **train_values)
    out = Path(args.out)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    first = train_trm(
        model_config,
        train_config,
        out,
        device=device,
        progress=not args.json,
        time_limit_s=args.minutes * 60,
        log=lambda line: print(line, file=sys.stderr),
    )
    # The run's own state records training time only (data generation excluded).
    steps_per_s = first.step / max(first.elapsed_s, 1e-9)
    resumed = train_trm(
        model_config,
        train_config.model_copy(update={"steps": first.step + 3}),
        out,
        device=device,
        resume=True,
        progress=False,
        log=lambda line: print(line, file=sys.stderr),
    )
    summary = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "generator_9x9_minimal_puzzles_per_s_per_core": round(per_core, 2),
        "params": sum(p.numel() for p in _model_params(model_config)),
        "batch_size": train_config.batch_size,
        "steps": first.step,
        "train_seconds": round(first.elapsed_s, 1),
        "steps_per_s": round(steps_per_s, 3),
        "puzzle_steps_per_s": round(steps_per_s * train_config.batch_size, 1),
        "heldout_exact": first.heldout_accuracy,
        "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        if device.type == "cuda"
        else None,
        "resumed_to_step": resumed.step,
        "checkpoint": str(out),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key:>45}: {value}")
        print("full run: coral-agent train trm --preset sudoku9-paper --out runs/trm-sudoku9")
    return 0 if resumed.step == first.step + 3 else 1


def _model_params(config: Any) -> Any:
    from coral_sdk.models.trm.model import TinyRecursiveModel

    return TinyRecursiveModel(config).parameters()


if __name__ == "__main__":
    raise SystemExit(main())
