"""Run every benchmark in benchmarks/ with its quick arguments and record the figures.

Run: python benchmarks/run_all.py [--gpu] [--only bench_protocol bench_load] [--timeout 600]
     python benchmarks/run_all.py --list        (print the commands, run nothing)

Each ``bench_*.py`` here runs as its own process (known ones with short
arguments, unknown ones with their defaults) and its output, which already
holds its figures and its ratios against an in-run baseline, is captured.
``benchmarks/RESULTS.md`` then gets one generated section between the markers
below, with the machine description and every benchmark's output; the
hand-written sections other engineers keep in that file are left as they are.
``--gpu`` passes ``--device cuda`` to the model benchmarks.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
BEGIN = "<!-- run_all.py: generated section begins; edits inside are overwritten -->"
END = "<!-- run_all.py: generated section ends -->"

#: Quick arguments per benchmark: enough work for stable ratios, minutes not hours.
QUICK_ARGS: dict[str, list[str]] = {
    "bench_protocol": ["--n", "1000"],
    "bench_routing": ["--pairs", "1", "10", "--messages", "400"],
    "bench_coordination": ["--n", "200"],
    "bench_ledger": ["--n", "200", "--concurrency", "32", "--no-postgres"],
    "bench_ledger_api": ["--n", "200"],
    "bench_teams": ["--repeats", "3", "--n", "500"],
    "bench_team_node": ["--n", "50", "--rounds", "2"],
    "bench_gossip_sim": ["--sizes", "50,100"],
    "bench_agentflow": ["--questions", "8", "--tiny-questions", "2"],
    "bench_models": ["--requests", "128", "--concurrency", "16"],
    "bench_opentslm": ["--throughput", "--requests", "8"],
    "bench_a2a": ["--requests", "60"],
    "bench_federation": ["--pairs", "2", "--messages", "100"],
    "bench_dashboard": ["--repeats", "5"],
    "bench_load": ["--agents", "1000", "--messages", "100"],
}
#: Benchmarks that take ``--device``.
MODEL_BENCHMARKS = {"bench_models", "bench_opentslm"}
#: Run first: cheap and pure CPU, so a broken tree shows up early.
ORDER = list(QUICK_ARGS)


@dataclass
class Outcome:
    """One benchmark run: what ran, how it ended, what it printed."""

    name: str
    command: list[str]
    returncode: int
    seconds: float
    output: str


def discover() -> list[str]:
    """Every benchmark script here, known ones first in a fixed order."""
    found = {p.stem for p in HERE.glob("bench_*.py")}
    return [n for n in ORDER if n in found] + sorted(found - set(ORDER))


def command_for(name: str, gpu: bool) -> list[str]:
    args = list(QUICK_ARGS.get(name, []))
    if name in MODEL_BENCHMARKS:
        args += ["--device", "cuda" if gpu else "cpu"]
    return [sys.executable, str(HERE / f"{name}.py"), *args]


def run_one(name: str, gpu: bool, timeout: float) -> Outcome:
    command = command_for(name, gpu)
    started = time.monotonic()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=HERE.parent, env=env
        )
        code, output = done.returncode, done.stdout + (done.stderr if done.returncode else "")
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode()
        code, output = 124, partial + f"\n[stopped after {timeout:.0f} s]"
    return Outcome(name, command, code, time.monotonic() - started, output.strip())


def _first_line(path: str, prefix: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine_description() -> list[str]:
    """CPU, cores, memory, Python, and torch/CUDA when installed."""
    memory_kib = _first_line("/proc/meminfo", "MemTotal")
    lines = [
        f"- CPU: {_first_line('/proc/cpuinfo', 'model name')} ({os.cpu_count()} logical cores)",
        f"- memory: {memory_kib}",
        f"- OS: {platform.platform()}",
        f"- Python: {platform.python_version()} ({platform.python_implementation()})",
    ]
    try:
        import torch

        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available"
        lines.append(f"- torch: {torch.__version__}; CUDA: {cuda}")
    except ImportError:
        lines.append("- torch: not installed")
    try:
        load = os.getloadavg()
        lines.append(f"- load average at start: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    except OSError:
        pass
    return lines


def render(outcomes: list[Outcome], invocation: str) -> str:
    """The generated Markdown section (markers included)."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = [
        BEGIN,
        "## All benchmarks, generated by benchmarks/run_all.py",
        "",
        f"Command: `{invocation}` ({stamp}). Figures are each script's own output; every",
        "script prints its ratios against a baseline measured in the same run, so compare",
        "ratios across machines, not absolute rates.",
        "",
        *machine_description(),
        "",
        "| benchmark | status | seconds |",
        "|---|---|---|",
    ]
    for o in outcomes:
        status = "ok" if o.returncode == 0 else f"failed ({o.returncode})"
        out.append(f"| {o.name} | {status} | {o.seconds:.0f} |")
    for o in outcomes:
        shown = " ".join([Path(o.command[1]).relative_to(HERE.parent).as_posix(), *o.command[2:]])
        lines = o.output.splitlines()
        if len(lines) > 80:
            lines = ["...", *lines[-80:]]
        out += ["", f"### {o.name}", "", f"`python {shown}`", "", "```", *lines, "```"]
    out.append(END)
    return "\n".join(out) + "\n"


def merge(existing: str, section: str) -> str:
    """Replace the generated section in place, or append it; other text is kept verbatim."""
    if BEGIN in existing and END in existing:
        head, rest = existing.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        return head + section.rstrip("\n") + tail
    return existing.rstrip("\n") + "\n\n" + section


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="pass --device cuda to model benchmarks")
    parser.add_argument("--only", nargs="+", default=None, help="benchmark names to run")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per benchmark")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--list", action="store_true", help="print the commands and exit")
    args = parser.parse_args()
    names = discover()
    if args.only:
        unknown = set(args.only) - set(names)
        if unknown:
            parser.error(f"no such benchmark: {', '.join(sorted(unknown))}")
        names = [n for n in names if n in args.only]
    if args.list:
        for name in names:
            print(" ".join(command_for(name, args.gpu)))
        return 0
    outcomes = []
    for name in names:
        print(f"== {name}", flush=True)
        outcome = run_one(name, args.gpu, args.timeout)
        print(outcome.output, flush=True)
        print(f"-- {name}: exit {outcome.returncode} in {outcome.seconds:.0f} s", flush=True)
        outcomes.append(outcome)
    invocation = "python benchmarks/run_all.py " + " ".join(sys.argv[1:])
    existing = args.results.read_text() if args.results.exists() else "# Benchmark results\n"
    args.results.write_text(merge(existing, render(outcomes, invocation.strip())))
    print(f"wrote {args.results}")
    return 0 if all(o.returncode == 0 for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
