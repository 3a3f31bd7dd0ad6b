"""Where a node's time goes while it routes signed messages (py-spy over bench_routing's load).

Run: python benchmarks/bench_routing_profile.py [--pairs 100] [--seconds 8]   (needs py-spy on PATH)
     [--loop-thread]   (the event loop thread's own time, GIL held or not)

Starts a node, drives it with ``bench_routing.py --address`` (P pairs, unary
Submit, Subscribe streams) and samples the node with ``py-spy record`` while
the load runs. Prints the share of samples per bucket, by the innermost frame
(C code is counted in the Python frame that called it): gRPC's own machinery,
the event loop, Coral's Python, signature checks, SQLite, and the rest
(pydantic, protobuf, JSON...). Only samples of a thread holding the GIL are
taken (``--gil``), so waiting is left out and shares are of busy time; with
uvloop, time in its C code and cygrpc's shows as the loop's run call. Since
that leaves out work done without the GIL (SQLite statements, Ed25519, gRPC's
own threads), it also prints each thread's share of the node's CPU over the
same seconds, from /proc. With ``--loop-thread`` the samples are the event loop
thread's alone, whether or not it holds the GIL: time it spends blocked in
Ed25519 (GIL released) or waiting to take the GIL back shows there.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._node import BenchNode

HERE = Path(__file__).resolve().parent

IDLE = ("select (selectors.py", "epoll")
BUCKETS = [
    ("signature checks (PyNaCl)", ("(nacl/",)),
    ("SQLite (database thread, store code)", ("sqlite", "(aiosqlite/")),
    ("gRPC and event loop in C (cygrpc, uvloop: no Python frame)", ("Runner.run (",)),
    ("gRPC machinery in Python (grpc.aio)", ("(grpc/", "(grpc_")),
    ("event loop in Python (asyncio)", ("(asyncio/",)),
    ("Coral's own Python", ("(coral/",)),
]


def bucket(leaf: str) -> str:
    for name, marks in BUCKETS:
        if any(mark in leaf for mark in marks):
            return name
    return "other Python (pydantic, protobuf, json, ...)"


def summarize(raw: Path, loop_thread: bool = False) -> list[str]:
    counts: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, n_text = line.rsplit(" ", 1)
        frames = stack.split(";")
        if loop_thread:  # py-spy --threads puts "thread (tid): name" first
            if "MainThread" not in frames[0] or len(frames) < 2:
                continue
            frames = frames[1:]
        leaf = frames[-1]
        if any(mark in leaf for mark in IDLE):
            continue
        n = int(n_text)
        busy += n
        counts[bucket(leaf)] += n
        for name in ("MessageGateway.submit", "CoordinationServicer.Subscribe", "verify_message"):
            if any(name in f for f in frames):
                inclusive[name] += n
    if not busy:
        return ["no busy samples"]
    what = "event loop thread samples" if loop_thread else "busy samples"
    out = [f"{busy} {what}; share by innermost frame:"]
    for name, n in counts.most_common():
        out.append(f"  {100 * n / busy:5.1f}%  {name}")
    out.append("inclusive (any frame on the stack):")
    for name, n in inclusive.most_common():
        out.append(f"  {100 * n / busy:5.1f}%  {name}")
    return out


def thread_ticks(pid: int) -> dict[str, tuple[str, int]]:
    """Per thread of ``pid``: its name and the user+system clock ticks it has used."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except FileNotFoundError:
            continue  # the thread ended
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        out[tid] = (name, int(fields[11]) + int(fields[12]))
    return out


def thread_shares(pid: int, before: dict[str, tuple[str, int]], seconds: float) -> list[str]:
    """Each group of threads' share of the CPU the node used since ``before``."""
    used: collections.Counter[str] = collections.Counter()
    for tid, (name, ticks) in thread_ticks(pid).items():
        if tid == str(pid):
            group = "event loop thread (gRPC calls, Coral's Python, Ed25519)"
        elif name == "event_engine":
            group = "gRPC's event-engine threads"
        else:
            group = "other threads (SQLite writer, gRPC's completion-queue poller, aiosqlite)"
        used[group] += ticks - before.get(tid, (name, 0))[1]
    total = sum(used.values())
    if not total:
        return []
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    out = [f"node CPU by thread: {total / ticks_per_s / seconds:.2f} cores in all"]
    for group, ticks in used.most_common():
        out.append(f"  {100 * ticks / total:5.1f}%  {group}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--messages", type=int, default=6000)
    parser.add_argument("--keep", type=Path, help="also copy py-spy's raw stacks here")
    parser.add_argument(
        "--loop-thread",
        action="store_true",
        help="sample the event loop thread whether or not it holds the GIL",
    )
    args = parser.parse_args()
    pyspy = shutil.which("py-spy")
    if pyspy is None:
        print("py-spy is not installed (pip install py-spy): no profile taken")
        return 0
    with BenchNode() as node, tempfile.TemporaryDirectory() as tmp:
        assert node.proc is not None
        load = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "bench_routing.py"),
                "--address",
                node.info["grpc_address"],
                "--http",
                node.info["http_address"],
                "--pairs",
                str(args.pairs),
                "--messages",
                str(args.messages),
                "--rounds",
                "1",
                "--no-stream",  # the unary path is profiled
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(6.0 + args.pairs / 50)  # registrations and subscriptions first
        raw = Path(tmp) / "profile.txt"
        threads0, started = thread_ticks(node.proc.pid), time.monotonic()
        spy = subprocess.run(
            [
                pyspy,
                "record",
                "-p",
                str(node.proc.pid),
                "-d",
                str(args.seconds),
                "-r",
                "200",
                "-f",
                "raw",
                "-o",
                str(raw),
                "--nonblocking",
                "--threads" if args.loop_thread else "--gil",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
            timeout=args.seconds + 60,
        )
        shares = thread_shares(node.proc.pid, threads0, time.monotonic() - started)
        if args.keep is not None and raw.exists():
            shutil.copy(raw, args.keep)
        load.terminate()
        load.wait(30)
        print(f"node routing {args.pairs} pairs (unary Submit, Subscribe streams), py-spy 200 Hz")
        failed = ["py-spy wrote no profile:", spy.stderr.decode(errors="replace")[-2000:]]
        found = summarize(raw, args.loop_thread) if raw.exists() else failed
        for line in [*found, *shares]:
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
