"""`coral-agent train opentslm` and `coral-agent eval opentslm`.

Train: ``coral-agent train opentslm --arch softprompt|flamingo|text_baseline --out DIR``
(resumes when DIR already holds a partial run). Eval: ``coral-agent eval opentslm
--checkpoint DIR`` prints accuracy and macro-F1 on synthetic HAR or on local data files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SHIPPED = Path(__file__).parent / "checkpoints"


def add_train_args(parser: argparse.ArgumentParser) -> None:
    """Options for training one architecture."""
    parser.add_argument(
        "--arch", choices=["softprompt", "flamingo", "text_baseline"], default="softprompt"
    )
    parser.add_argument("--out", type=Path, required=True, help="checkpoint directory (resumable)")
    parser.add_argument(
        "--backbone",
        type=Path,
        default=SHIPPED / "backbone",
        help="local directory of a transformers causal LM (built if missing)",
    )
    parser.add_argument("--steps", type=int, default=400, help="rationale (CoT) steps")
    parser.add_argument(
        "--classify-steps",
        type=int,
        default=0,
        help="curriculum: first train this many steps on bare 'Answer: <label>' targets",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lora-rank", type=int, default=None, help="LoRA rank (0 = frozen LM)")
    parser.add_argument("--train-samples", type=int, default=1200)
    parser.add_argument("--series-length", type=int, default=64)
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="local HAR-CoT csv or *.jsonl (Sleep-CoT/ECG-QA-CoT) instead of synthetic",
    )
    parser.add_argument(
        "--only-attend-immediate-media",
        action="store_true",
        help="flamingo: text sees only the latest series (open_flamingo), not all before it",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)


def train(args: argparse.Namespace) -> int:
    """Train (or resume) and save a checkpoint; prints the final loss."""
    import torch

    from coral_sdk.models.opentslm.backbone import build_small_backbone, set_seed
    from coral_sdk.models.opentslm.checkpoint import build_model
    from coral_sdk.models.opentslm.training import (
        CurriculumStage,
        TrainSettings,
        train_curriculum,
    )
    from coral_sdk.runtime.device import pick_device

    torch.set_num_threads(args.threads)
    set_seed(args.seed)
    device = pick_device(args.device)
    samples = _load_samples(args.data, "train", args.train_samples, args.series_length, args.seed)
    if not (args.backbone / "config.json").is_file():
        print(f"building the small backbone in {args.backbone}")
        build_small_backbone(args.backbone, samples, device=device)
    lora = (
        args.lora_rank
        if args.lora_rank is not None
        else (16 if args.arch == "text_baseline" else 0)
    )
    settings: dict[str, object] = {"lora_rank": lora}
    if args.only_attend_immediate_media:
        settings["flamingo"] = {"only_attend_immediate_media": True}
    model = build_model(args.arch, args.backbone, settings, device)
    cot = TrainSettings(args.steps, args.batch_size, args.lr, args.seed)
    stages = [CurriculumStage("cot", cot)]
    if args.classify_steps > 0:
        first = TrainSettings(args.classify_steps, args.batch_size, args.lr, args.seed)
        stages.insert(0, CurriculumStage("classify", first))
    labels = sorted({s.label for s in samples if s.label})
    extra = {**settings, "labels": labels, "data": {"series_length": args.series_length}}
    losses = train_curriculum(model, samples, args.out, args.backbone, stages, extra)
    if losses:
        print(f"trained {args.arch}: final loss {sum(losses[-10:]) / len(losses[-10:]):.4f}")
    print(f"checkpoint: {args.out}")
    return 0


def add_eval_args(parser: argparse.ArgumentParser) -> None:
    """Options for evaluating a checkpoint."""
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED / "softprompt")
    parser.add_argument("--samples", type=int, default=240)
    parser.add_argument("--series-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1234, help="seed of the synthetic test set")
    parser.add_argument(
        "--data", type=Path, default=None, help="local test file instead of synthetic"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def evaluate(args: argparse.Namespace) -> int:
    """Print accuracy and macro-F1 of a checkpoint's generated answers."""
    import torch

    from coral_sdk.models.opentslm.checkpoint import load_checkpoint
    from coral_sdk.models.opentslm.data import HAR_LABELS
    from coral_sdk.models.opentslm.training import evaluate_model
    from coral_sdk.runtime.device import pick_device

    torch.set_num_threads(args.threads)
    model, config = load_checkpoint(args.checkpoint, pick_device(args.device))
    samples = _load_samples(args.data, "test", args.samples, args.series_length, args.seed)
    labels = config.get("labels", HAR_LABELS)
    report = evaluate_model(model, samples, args.batch_size, labels=labels)
    if args.json:
        print(json.dumps({"arch": config["arch"], **report.as_dict()}))
    else:
        print(
            f"{config['arch']}: accuracy {report.accuracy:.3f}  macro-F1 {report.macro_f1:.3f}  "
            f"({report.count} samples, {report.unparsed} without an answer, {report.seconds:.1f}s)"
        )
    return 0


def _load_samples(data: Path | None, split: str, count: int, length: int, seed: int) -> list:  # type: ignore[type-arg]
    from coral_sdk.models.opentslm.data import make_har_samples
    from coral_sdk.models.opentslm.local_datasets import load_local_dataset

    if data is None:
        return make_har_samples(count, length, seed)
    return load_local_dataset(data)[:count]
