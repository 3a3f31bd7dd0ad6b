"""Run the A2A TCK (a2aproject/a2a-tck) against a fresh node with an SDK echo agent.

Usage::

    python scripts/a2a_tck.py PATH_TO_TCK_CHECKOUT [--category mandatory] \
        [--transports jsonrpc,grpc,rest] [--python TCK_PYTHON]

The TCK is not part of this repository: check it out anywhere, install its
requirements (``pip install -e .`` in its own virtual environment), and pass
its path. The script starts ``coral-node`` on 127.0.0.1 with free ports in a
temporary data dir, registers the echo agent below with the SDK, points the
TCK at the agent's base URL (``/a2a/tck-echo``) and runs one TCK category per
transport, printing the TCK's summary lines. Exit status: 0 when every run
passed.

The agent uses the SDK's long-running task API: it accepts each task for
background work (``WORKING``; a blocking call returns at once), works for
``WORK_S`` seconds, posts a partial artifact, then completes with the echo; a
text containing ``input-required`` asks back instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "sdk")]

from coral_sdk import Agent, AgentManifest, Incoming  # noqa: E402
from coral_sdk.agent import TaskUpdate, Updates  # noqa: E402

AGENT = "tck-echo"
#: The TCK's bearer token (A2A_AUTH_TOKEN), configured as caller "tck".
TOKEN = "tck-token-for-the-extended-card"
#: How long each task stays WORKING before it completes.
WORK_S = 8.0
TRANSPORTS = {"jsonrpc": "jsonrpc", "grpc": "grpc", "rest": "rest", "http+json": "rest"}


class TckEcho(Agent):
    """The system under test: echoes through the long-running task API."""

    manifest = AgentManifest(name=AGENT, description="echoes for the A2A TCK", version="1.0.0")
    concurrency = 256

    async def on_mention(self, message: Incoming) -> Updates:
        text = message.text
        if "input-required" in text.lower():
            yield TaskUpdate.input_required("more input, please")
            return
        yield TaskUpdate.accepted("working on it")
        await asyncio.sleep(WORK_S)
        yield TaskUpdate.artifact(f"partial: {text[:20]}")
        yield TaskUpdate.complete(f"echo: {text}")


def start_node(data_dir: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    config = data_dir / "config.toml"
    data_dir.mkdir(parents=True, exist_ok=True)
    # localhost: the TCK flags 127.0.0.1 URLs in cards as internal (it allows localhost).
    config.write_text(
        'advertise_host = "localhost"\n'
        f'[a2a]\ndefault_agent = "{AGENT}"\n'
        'extended_card_description = "Extended card: shown to authenticated callers."\n'
        # The TCK's webhooks: its receiver on localhost and example.com (never called).
        'push_allow = ["localhost", "127.0.0.1", "example.com"]\n'
        f'[a2a.callers]\ntck = "{TOKEN}"\n'
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'sdk'}"}
    log = open(data_dir.parent / "node.log", "ab")
    command = [sys.executable, "-m", "coral", "start", "--data-dir", str(data_dir)]
    command += ["--grpc-port", "0", "--http-port", "0", "--config", str(config)]
    proc = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    runtime = data_dir / "node.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"node exited; see {data_dir.parent / 'node.log'}")
        try:
            info = json.loads(runtime.read_text())
            if info.get("pid") == proc.pid:
                return proc, info
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("node did not start in 60 s")


def run_agent(http: str, key: Path, ready: threading.Event, stop: threading.Event) -> None:
    async def main() -> None:
        agent = TckEcho(http, key_file=key)
        task = asyncio.create_task(agent.run())
        await agent.ready.wait()
        ready.set()
        await asyncio.to_thread(stop.wait)
        agent.stop()
        await task

    asyncio.run(main())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tck", type=Path, help="path of an a2a-tck checkout")
    parser.add_argument("--category", default="mandatory")
    parser.add_argument("--transports", default="jsonrpc,grpc,rest")
    parser.add_argument("--python", help="the TCK's interpreter (default: TCK/.venv/bin/python)")
    parser.add_argument(
        "--serve", action="store_true", help="only start the node and agent, until interrupted"
    )
    args = parser.parse_args()
    tck: Path = args.tck.resolve()
    python = args.python or str(tck / ".venv" / "bin" / "python")
    if not Path(python).exists():
        python = sys.executable
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up the node too
    workdir = Path(tempfile.mkdtemp(prefix="coral-tck-"))
    proc, info = start_node(workdir / "node")
    ready, stop = threading.Event(), threading.Event()
    agent = threading.Thread(
        target=run_agent, args=(info["http_address"], workdir / "agent.key", ready, stop)
    )
    agent.start()
    failed = 0
    try:
        if not ready.wait(60):
            raise SystemExit("the echo agent did not register")
        sut = f"{info['http_address']}/a2a/{AGENT}"
        print(f"node {info['http_address']} (gRPC {info['grpc_address']}); SUT {sut}", flush=True)
        if args.serve:
            while agent.is_alive():
                agent.join(1)
        for transport in args.transports.split(","):
            name = TRANSPORTS[transport.strip().lower()]
            report = workdir / f"{args.category}-{name}.json"
            command = [python, "run_tck.py", "--sut-url", sut, "--category", args.category]
            command += ["--transports", name, "--compliance-report", str(report)]
            print(f"\n=== {args.category} over {name} ===", flush=True)
            env = {**os.environ, "A2A_AUTH_TYPE": "bearer", "A2A_AUTH_TOKEN": TOKEN}
            done = subprocess.run(command, cwd=tck, capture_output=True, text=True, env=env)
            summary = [line for line in done.stdout.splitlines() if " passed" in line]
            summary += [line for line in done.stdout.splitlines() if "FAILED" in line]
            print("\n".join(summary) or done.stdout[-3000:])
            failed += done.returncode != 0
    finally:
        stop.set()
        agent.join(30)
        proc.terminate()
        proc.wait(30)
    print(f"\nreports and logs: {workdir}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
