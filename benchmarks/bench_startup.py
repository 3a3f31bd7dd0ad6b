"""Startup time to a healthy /healthz: coral-node vs a bare grpc.aio + aiohttp server.

Run: python benchmarks/bench_startup.py [--rounds 7]

Each round starts the bare server (``benchmarks/_bare_server.py``) and then
``coral-node start`` on a fresh data dir (keys generated, every migration run),
timing from process start to the first 200 from ``/healthz``, then stops both.
Rounds alternate the two, and the ratio is the median over rounds with its
spread. Also reports the node's second start on an existing data dir.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._stats import ratio

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def time_to_healthy(command: list[str], http_port: int, timeout: float = 60.0) -> float:
    """Seconds from launching ``command`` until GET /healthz answers 200; stops it after."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - start < timeout:
            try:
                url = f"http://127.0.0.1:{http_port}/healthz"
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - start
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"{command[:4]} exited with {proc.returncode}")
            time.sleep(0.005)
        raise TimeoutError("not healthy in time")
    finally:
        proc.terminate()
        proc.wait(30)


def node_command(data_dir: Path, grpc_port: int, http_port: int) -> list[str]:
    return [
        sys.executable, "-m", "coral", "start", "--data-dir", str(data_dir),
        "--grpc-port", str(grpc_port), "--http-port", str(http_port), "--log-level", "warning",
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    bare: list[float] = []
    fresh: list[float] = []
    again: list[float] = []
    with tempfile.TemporaryDirectory(prefix="coral-startup-") as tmp:
        for r in range(args.rounds):
            g, h = free_port(), free_port()
            bare_cmd = [sys.executable, str(HERE / "_bare_server.py"), str(g), str(h)]
            bare.append(time_to_healthy(bare_cmd, h))
            data_dir = Path(tmp) / f"node{r}"
            g, h = free_port(), free_port()
            fresh.append(time_to_healthy(node_command(data_dir, g, h), h))
            g, h = free_port(), free_port()
            again.append(time_to_healthy(node_command(data_dir, g, h), h))
    print(f"{args.rounds} rounds, alternating; seconds from process start to /healthz 200")
    print(f"bare grpc.aio + aiohttp       median {statistics.median(bare):.3f} s")
    print(f"coral-node, fresh data dir    median {statistics.median(fresh):.3f} s")
    print(f"coral-node, existing data dir median {statistics.median(again):.3f} s")
    fresh_ratio = ratio(fresh, bare)
    print(f"fresh / bare:    {fresh_ratio}  target <= 2.5x")
    again_ratio = ratio(again, bare)
    print(f"existing / bare: {again_ratio}")
    for name, r in (("fresh data dir", fresh_ratio), ("existing data dir", again_ratio)):
        print(
            f"goal, {name}: <= 2.5x the bare server: {r.median:.2f}x,"
            f" {'met' if r.median <= 2.5 else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
