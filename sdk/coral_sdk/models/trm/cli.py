"""``coral-agent train trm`` and ``coral-agent eval trm``.

Training writes a checkpoint directory (see ``checkpoint.py``); ``--ablation``
also trains the same network without recursion (T=1, n=1) into
``<out>-norec``, which ``eval`` then scores next to the TRM, as the paper does.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # The paper's Sudoku-Extreme settings (TRM-MLP): needs a GPU and hours.
    "paper": {
        "hidden_size": 512,
        "num_heads": 8,
        "T": 3,
        "n": 6,
        "n_sup": 16,
        "mixer": "mlp",
        "pos_encodings": "none",
        "puzzle_emb_len": 16,
        "batch_size": 768,
        "lr": 1e-4,
        "lr_warmup_steps": 2000,
        "weight_decay": 1.0,
        "ema_decay": 0.999,
    },
    # 6x6 minimal-clue Sudoku sized for about an hour of one shared CPU core:
    # the paper's algorithm (T=3 recursions, EMA, ACT, MLP mixer) at hidden 64,
    # n=2 and N_sup=8, constant LR after warmup so any checkpoint is usable.
    "sudoku6": {
        "task": "sudoku6",
        "hidden_size": 64,
        "num_heads": 4,
        "T": 3,
        "n": 2,
        "n_sup": 8,
        "mixer": "mlp",
        "pos_encodings": "none",
        "puzzle_emb_len": 1,
        "batch_size": 64,
        "lr": 1e-3,
        "lr_warmup_steps": 100,
        "weight_decay": 0.1,
        "ema_decay": 0.995,
        "minimal": True,
        "train_size": 20000,
        "eval_size": 1000,
        "monitor_size": 256,
        "steps": 4000,
        "checkpoint_every": 250,
        "data_cache": "runs/data",
    },
    # The paper's Sudoku recipe on 9x9 minimal puzzles generated here (the paper
    # trains on 1000 Sudoku-Extreme puzzles x 1000 augmentations, 50k epochs):
    # TRM-MLP, hidden 512, T=3, n=6, N_sup=16, EMA 0.999, bf16 on CUDA.
    # About 65k optimizer steps at batch 768 = 50k epochs of 1000 puzzles.
    "sudoku9-paper": {
        "task": "sudoku9",
        "hidden_size": 512,
        "num_heads": 8,
        "T": 3,
        "n": 6,
        "n_sup": 16,
        "mixer": "mlp",
        "pos_encodings": "none",
        "puzzle_emb_len": 16,
        "batch_size": 768,
        "lr": 1e-4,
        "lr_warmup_steps": 2000,
        "weight_decay": 1.0,
        "ema_decay": 0.999,
        "minimal": True,
        "train_size": 1000,
        "eval_size": 1000,
        "steps": 65000,
        "checkpoint_every": 1000,
        "data_cache": "runs/data",
    },
    # The same algorithm shrunk to train in minutes on one CPU core.
    "small": {
        "hidden_size": 64,
        "num_heads": 4,
        "T": 3,
        "n": 2,
        "n_sup": 4,
        "mixer": "mlp",
        "pos_encodings": "none",
        "puzzle_emb_len": 1,
        "batch_size": 64,
        "lr": 1e-3,
        "lr_warmup_steps": 50,
        "weight_decay": 0.1,
        "ema_decay": 0.99,
    },
}

_MODEL_FLAGS = {
    "hidden": "hidden_size",
    "heads": "num_heads",
    "layers": "num_layers",
    "expansion": "expansion",
    "T": "T",
    "n": "n",
    "n_sup": "n_sup",
    "mixer": "mixer",
    "pos": "pos_encodings",
    "puzzle_emb_len": "puzzle_emb_len",
    "loss": "loss",
}
_TRAIN_FLAGS = {
    "steps": "steps",
    "batch_size": "batch_size",
    "lr": "lr",
    "warmup": "lr_warmup_steps",
    "lr_min_ratio": "lr_min_ratio",
    "weight_decay": "weight_decay",
    "ema_decay": "ema_decay",
    "train_size": "train_size",
    "eval_size": "eval_size",
    "givens_min": "givens_min",
    "givens_max": "givens_max",
    "maze_min_path": "maze_min_path",
    "seed": "seed",
    "checkpoint_every": "checkpoint_every",
}


def _common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: auto)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")


def add_train_args(parser: argparse.ArgumentParser) -> None:
    """Flags of ``coral-agent train trm``; unset model/optimizer flags come from --preset."""
    parser.add_argument(
        "--task",
        default=None,
        help="sudoku4, sudoku6, sudoku9 or maze (default: the preset's, else sudoku4)",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--out", default=None, help="checkpoint dir (default runs/trm-<task>)")
    parser.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    parser.add_argument(
        "--ablation", action="store_true", help="also train T=1, n=1 into <out>-norec"
    )
    parser.add_argument(
        "--no-carry",
        action="store_true",
        help="start every supervision step from the initial y, z (no recursion at all; "
        "recorded in the checkpoint and honoured by eval and the served path)",
    )
    parser.add_argument("--no-ema", action="store_true", help="disable the weight EMA")
    parser.add_argument("--no-augment", action="store_true", help="disable data augmentation")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="stop after this many minutes, checkpointing where it got (then --resume)",
    )
    parser.add_argument(
        "--minimal",
        action="store_true",
        help="Sudoku: minimal puzzles (unique solution, no clue removable)",
    )
    parser.add_argument(
        "--data-cache", default=None, help="directory caching the generated puzzle sets"
    )
    for flag in ("hidden", "heads", "layers", "T", "n", "n_sup", "puzzle_emb_len"):
        parser.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=int, default=None)
    parser.add_argument("--expansion", type=float, default=None)
    parser.add_argument("--mixer", choices=["attention", "mlp"], default=None)
    parser.add_argument("--pos", choices=["rope", "learned", "none"], default=None)
    parser.add_argument("--loss", choices=["stablemax", "softmax"], default=None)
    for flag in ("steps", "batch_size", "warmup", "train_size", "eval_size", "seed"):
        parser.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=int, default=None)
    for flag in ("givens_min", "givens_max", "maze_min_path", "checkpoint_every"):
        parser.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=int, default=None)
    for flag in ("lr", "lr_min_ratio", "weight_decay", "ema_decay"):
        parser.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=float, default=None)
    _common_args(parser)


def configs_from_args(args: argparse.Namespace) -> tuple[Any, Any]:
    """Build (TrmConfig, TrainConfig) from the preset, overridden by explicit flags."""
    from coral_sdk.models.trm.config import TrainConfig, TrmConfig
    from coral_sdk.models.trm.tasks import get_task

    preset = dict(PRESETS[args.preset])
    task = get_task(args.task or preset.pop("task", "sudoku4"))
    preset.pop("task", None)
    model_fields = set(TrmConfig.model_fields)
    model_values: dict[str, Any] = {k: v for k, v in preset.items() if k in model_fields}
    train_values: dict[str, Any] = {k: v for k, v in preset.items() if k not in model_fields}
    for flag, field in _MODEL_FLAGS.items():
        if getattr(args, flag, None) is not None:
            model_values[field] = getattr(args, flag)
    for flag, field in _TRAIN_FLAGS.items():
        if getattr(args, flag, None) is not None:
            train_values[field] = getattr(args, flag)
    if getattr(args, "no_carry", False):
        model_values["carry"] = False
    model_config = TrmConfig(vocab_size=task.vocab_size, seq_len=task.seq_len, **model_values)
    if getattr(args, "minimal", False):
        train_values["minimal"] = True
    if getattr(args, "data_cache", None):
        train_values["data_cache"] = args.data_cache
    train_config = TrainConfig(
        task=task.name, ema=not args.no_ema, augment=not args.no_augment, **train_values
    )
    return model_config, train_config


def _setup_torch(args: argparse.Namespace) -> Any:
    import torch

    from coral_sdk.runtime.device import pick_device

    torch.set_num_threads(max(1, args.threads))
    return pick_device(args.device)


def train(args: argparse.Namespace) -> int:
    """Train TRM (and optionally the no-recursion ablation); print where checkpoints went."""
    from coral_sdk.models.trm.training import train_trm

    device = _setup_torch(args)
    model_config, train_config = configs_from_args(args)
    out = Path(args.out or f"runs/trm-{train_config.task}")
    runs = [(out, model_config)]
    if args.ablation:
        flat = model_config.model_copy(update={"T": 1, "n": 1})
        runs.append((out.with_name(out.name + "-norec"), flat))
    for directory, config in runs:
        print(
            f"training {directory} (T={config.T}, n={config.n}, N_sup={config.n_sup}) on {device}"
        )
        result = train_trm(
            config,
            train_config,
            directory,
            device=device,
            resume=args.resume,
            progress=not args.quiet,
            time_limit_s=args.time_limit * 60 if args.time_limit else None,
        )
        print(
            f"{directory}: step {result.step}, {result.elapsed_s:.0f} s, "
            f"held-out exact accuracy {result.heldout_accuracy:.4f}"
        )
    return 0


def add_eval_args(parser: argparse.ArgumentParser) -> None:
    """Flags of ``coral-agent eval trm``."""
    parser.add_argument("--checkpoint", required=True, help="TRM checkpoint directory")
    parser.add_argument(
        "--ablation",
        default=None,
        help="no-recursion checkpoint to compare (default: <checkpoint>-norec if present)",
    )
    parser.add_argument(
        "--train-ablation",
        action="store_true",
        help="train the T=1, n=1 ablation with the checkpoint's recipe when it is missing",
    )
    parser.add_argument("--eval-size", type=int, default=None, help="held-out puzzles to score")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    _common_args(parser)


def _step_counts(n_sup: int) -> list[int]:
    counts = sorted({1, 2, 4, n_sup // 2, n_sup} - {0})
    return [c for c in counts if c <= n_sup]


def evaluate(args: argparse.Namespace) -> int:
    """Print exact accuracy on the held-out set: TRM by supervision steps, served, ablations."""
    from tqdm.auto import tqdm

    from coral_sdk.models.trm.checkpoint import load_model
    from coral_sdk.models.trm.data import HELDOUT_SEED, difficulty_of, heldout_set
    from coral_sdk.models.trm.evaluation import exact_accuracy, served_metrics, without_recursion
    from coral_sdk.models.trm.solver import TrmSolver
    from coral_sdk.models.trm.tasks import get_task
    from coral_sdk.models.trm.training import train_trm

    device = _setup_torch(args)
    checkpoint = Path(args.checkpoint)
    model, config = load_model(checkpoint, device)
    task = get_task(config.train.task)
    size = args.eval_size or config.train.eval_size
    puzzles, solutions = heldout_set(task, difficulty_of(config.train), size)
    m = config.model
    rows: list[tuple[str, float | None]] = []
    counts = _step_counts(m.n_sup)
    bar = tqdm(total=len(counts) + 3, desc=f"eval {task.name}", disable=args.quiet, unit="run")
    carry = "" if m.carry else ", no carry"
    for steps in counts:
        label = f"TRM (T={m.T}, n={m.n}{carry}), {steps} of N_sup={m.n_sup} supervision steps"
        rows.append((label, exact_accuracy(model, task, puzzles, solutions, steps=steps)))
        bar.update(1)
    rows.append(
        (
            "same weights without recursion (T=1, n=1)",
            exact_accuracy(without_recursion(model), task, puzzles, solutions),
        )
    )
    bar.update(1)
    served = served_metrics(TrmSolver(model, task), puzzles, solutions)
    rows.append(("served: steps until verified (or N_sup)", served.accuracy))
    longer = served_metrics(TrmSolver(model, task, max_steps=2 * m.n_sup), puzzles, solutions)
    rows.append((f"served: steps until verified (or 2 x N_sup = {2 * m.n_sup})", longer.accuracy))
    bar.update(1)
    ablation = (
        Path(args.ablation) if args.ablation else checkpoint.with_name(checkpoint.name + "-norec")
    )
    if not (ablation / "config.json").is_file() and args.train_ablation:
        flat = m.model_copy(update={"T": 1, "n": 1})
        train_trm(flat, config.train, ablation, device=device)
    if (ablation / "config.json").is_file():
        flat_model, flat_config = load_model(ablation, device)
        rows.append(
            (
                f"trained without recursion (T={flat_config.model.T}, n={flat_config.model.n}"
                + ("" if flat_config.model.carry else ", no carry")
                + ")",
                exact_accuracy(flat_model, task, puzzles, solutions),
            )
        )
    else:
        rows.append(("trained without recursion: missing (use --train-ablation)", None))
    bar.update(1)
    bar.close()
    served_summary = {
        "accuracy": served.accuracy,
        "verified_rate": served.verified_rate,
        "mean_supervision_steps": served.mean_steps,
        "wrong_but_verified": served.wrong_but_verified,
        "twice_n_sup": {
            "accuracy": longer.accuracy,
            "mean_supervision_steps": longer.mean_steps,
            "wrong_but_verified": longer.wrong_but_verified,
        },
    }
    if args.json:
        print(
            json.dumps(
                {
                    "task": task.name,
                    "heldout_size": len(puzzles),
                    "heldout_seed": HELDOUT_SEED,
                    "results": dict(rows),
                    "served": served_summary,
                }
            )
        )
        return 0
    print(f"{task.name}: exact accuracy on {len(puzzles)} held-out puzzles (seed {HELDOUT_SEED})")
    for label, value in rows:
        print(f"  {label:<64} {'-' if value is None else f'{value:.4f}'}")
    for name, metrics in (("N_sup", served), ("2 x N_sup", longer)):
        print(
            f"  served (cap {name}): mean {metrics.mean_steps:.2f} supervision steps, "
            f"{metrics.wrong_but_verified} verified answers wrong"
        )
    return 0
