"""OpenTSLM benchmarks: memory/time against series length, and batched vs single inference.

    python benchmarks/bench_opentslm.py --memory       # SoftPrompt vs Flamingo, 64..4096 samples
    python benchmarks/bench_opentslm.py --throughput   # samples/s at batch 1 vs batch 16

Memory is measured per configuration in a fresh subprocess running one training step
(forward + backward, batch 1, 3 channels): on CUDA ``torch.cuda.max_memory_allocated``,
on CPU the growth of peak resident set size (``ru_maxrss``) over the RSS after model load.
Figures are printed as ratios to the shortest length, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sdk"))
SHIPPED = ROOT / "sdk/coral_sdk/models/opentslm/checkpoints"
LENGTHS = (64, 256, 1024, 4096)
ARCHS = ("softprompt", "flamingo")


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def memory_child(arch: str, length: int, device_name: str) -> dict[str, float | int | str]:
    """One training step at ``length`` samples per channel; returns peak memory and time."""
    import numpy as np
    import torch

    from coral_sdk.models.opentslm.checkpoint import build_model
    from coral_sdk.models.opentslm.data import build_sample, synthesize_accelerometer

    torch.set_num_threads(1)
    device = torch.device(device_name)
    model = build_model(arch, SHIPPED / "backbone", {}, device)
    model.train()
    window = synthesize_accelerometer("walking", length, np.random.default_rng(0))
    sample = build_sample(list(window), answer="Even steps. Answer: walking", label="walking")
    tokens = int(model.prepare([sample], with_answer=True).input_ids.shape[1])
    baseline_rss = _rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base_cuda = torch.cuda.memory_allocated(device)
    started = time.perf_counter()
    model.compute_loss([sample]).backward()  # type: ignore[no-untyped-call]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = (torch.cuda.max_memory_allocated(device) - base_cuda) / 2**20
        method = "cuda.max_memory_allocated"
    else:
        # ru_maxrss is in KiB on Linux; the child process is fresh, so its peak is this step's.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline_rss
        method = "peak RSS growth (ru_maxrss)"
    return {
        "arch": arch,
        "length": length,
        "lm_tokens": tokens,
        "peak_mib": round(max(peak, 0.0), 1),
        "step_s": round(time.perf_counter() - started, 3),
        "method": method,
    }


def run_memory(device_name: str) -> None:
    """Print the memory/time curve for both architectures."""
    rows = []
    for arch in ARCHS:
        for length in LENGTHS:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--memory-child",
                    arch,
                    str(length),
                    "--device",
                    device_name,
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"memory method: {rows[0]['method']}, device {device_name}, batch 1, 3 channels")
    print("| arch | samples/channel | LM tokens | peak MiB | x vs 64 | step s | x vs 64 |")
    print("|---|---|---|---|---|---|---|")
    for arch in ARCHS:
        mine = [r for r in rows if r["arch"] == arch]
        base = mine[0]
        for r in mine:
            print(
                f"| {arch} | {r['length']} | {r['lm_tokens']} | {r['peak_mib']} | "
                f"{r['peak_mib'] / max(base['peak_mib'], 0.1):.1f} | {r['step_s']} | "
                f"{r['step_s'] / base['step_s']:.1f} |"
            )


def run_throughput(device_name: str, count: int, batch_size: int) -> None:
    """Samples/s of the predictor at batch 1 and at ``batch_size``, for both architectures."""
    import torch

    from coral_sdk.models.opentslm.data import HAR_PRE_PROMPT, make_har_samples
    from coral_sdk.models.opentslm.predictor import OpenTslmPredictor

    torch.set_num_threads(1)
    samples = make_har_samples(count, 64, seed=99)
    requests = [
        {"question": HAR_PRE_PROMPT, "series": [s.tolist() for s in x.series]} for x in samples
    ]
    print(
        f"device {device_name}, {count} requests, 64 samples x 3 channels, greedy up to 48 tokens"
    )
    print(f"| arch | batch 1 samples/s | batch {batch_size} samples/s | ratio |")
    print("|---|---|---|---|")
    for arch in ARCHS:
        predictor = OpenTslmPredictor.from_checkpoint(SHIPPED / arch, device=device_name)
        predictor.predict_batch(requests[:2])  # warm-up
        started = time.perf_counter()
        for request in requests:
            predictor.predict_batch([request])
        single = count / (time.perf_counter() - started)
        started = time.perf_counter()
        for begin in range(0, count, batch_size):
            predictor.predict_batch(requests[begin : begin + batch_size])
        batched = count / (time.perf_counter() - started)
        print(f"| {arch} | {single:.2f} | {batched:.2f} | {batched / single:.1f}x |")


def main() -> int:
    """Parse flags and run the chosen benchmark(s)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--throughput", action="store_true")
    parser.add_argument(
        "--memory-child", nargs=2, metavar=("ARCH", "LENGTH"), help=argparse.SUPPRESS
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.memory_child:
        print(
            json.dumps(memory_child(args.memory_child[0], int(args.memory_child[1]), args.device))
        )
        return 0
    if not (args.memory or args.throughput):
        args.memory = args.throughput = True
    if args.memory:
        run_memory(args.device)
    if args.throughput:
        run_throughput(args.device, args.requests, args.batch_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
