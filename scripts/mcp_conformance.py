"""Run the MCP conformance runner's protocol-level server scenarios against a Coral node.

    python scripts/mcp_conformance.py                 # start a node, create an MCP agent, run
    python scripts/mcp_conformance.py --url URL       # run against an agent URL you already have

The runner (``@modelcontextprotocol/conformance`` from npm, pinned below) is
installed into a temporary directory outside the repository, with Node.js 22
from npm when the system's ``node`` is older (the runner needs 22). The node is
started on 127.0.0.1 with a throw-away data directory, and an agent is created
the way the README says (``coral-node mcp create NAME``). Prints one Markdown
row per scenario (the table in docs/interop.md) and exits 1 on any failed check.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RUNNER = "@modelcontextprotocol/conformance"
RUNNER_VERSION = "0.1.16"
NODE_FOR_RUNNER = "node@22"
CORAL = (sys.executable, "-m", "coral")
LOOPBACK_ANY_PORT = ("--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0")
#: The protocol-level server scenarios (the others need the runner's fixture tools and resources).
SCENARIOS = (
    "server-initialize",
    "ping",
    "tools-list",
    "resources-list",
    "dns-rebinding-protection",
    "server-sse-polling",
    "server-sse-multiple-streams",
)


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, failing loudly with its output."""
    done = subprocess.run(cmd, text=True, capture_output=True, **kwargs)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def node_major() -> int:
    """The system Node.js major version (0 when there is none)."""
    node = shutil.which("node")
    if node is None:
        return 0
    version = subprocess.run([node, "--version"], text=True, capture_output=True).stdout
    return int(version.strip().lstrip("v").split(".")[0] or 0)


def install_runner(workdir: Path) -> tuple[list[str], dict[str, str]]:
    """npm-install the runner (and Node 22 if needed); returns its command and environment."""
    if shutil.which("npm") is None:
        sys.exit("npm is needed to install the conformance runner (apt-get install npm)")
    packages = [f"{RUNNER}@{RUNNER_VERSION}"]
    if node_major() < 22:
        packages.append(NODE_FOR_RUNNER)
    run(["npm", "init", "-y"], cwd=workdir)
    run(["npm", "install", "--no-audit", "--no-fund", *packages], cwd=workdir)
    bin_dir = workdir / "node_modules" / ".bin"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return [str(bin_dir / "conformance")], env


def start_node(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    """Start ``coral-node start`` on free loopback ports; returns the process and HTTP URL."""
    log = open(data_dir.parent / "node.log", "w")
    proc = subprocess.Popen(
        [*CORAL, "start", "--data-dir", str(data_dir), *LOOPBACK_ANY_PORT],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    runtime = data_dir / "node.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the node exited: see {log.name}")
        try:
            info = json.loads(runtime.read_text())
            if info.get("pid") == proc.pid:
                return proc, str(info["http_address"])
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.2)
    proc.terminate()
    sys.exit("the node did not start within 120 s")


def create_agent(data_dir: Path, name: str) -> str:
    """``coral-node mcp create NAME``; returns the agent's Streamable HTTP URL."""
    done = run([*CORAL, "mcp", "create", name, "--data-dir", str(data_dir), "--json"])
    return str(json.loads(done.stdout)["urls"]["streamable_http"])


def run_scenario(
    runner: list[str], env: dict[str, str], url: str, scenario: str, out: Path
) -> dict[str, int]:
    """Run one scenario; count its checks by status."""
    target = out / scenario
    subprocess.run(
        [*runner, "server", "--url", url, "--scenario", scenario, "-o", str(target)],
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
    )
    counts = {"SUCCESS": 0, "FAILURE": 0, "WARNING": 0, "INFO": 0}
    for checks in target.glob("*/checks.json"):
        for check in json.loads(checks.read_text()):
            counts[check["status"]] = counts.get(check["status"], 0) + 1
    if not any(counts.values()):
        counts["FAILURE"] = 1  # the runner produced nothing: count it as a failure
    return counts


def main() -> int:
    """Install, start, run, print the table; exit 1 on any failed check."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an MCP agent's Streamable HTTP URL (default: start a node)")
    parser.add_argument("--scenario", action="append", help="run only these (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="coral-mcp-conformance-"))
    proc: subprocess.Popen[str] | None = None
    try:
        runner, env = install_runner(workdir)
        url = args.url
        if url is None:
            proc, _ = start_node(workdir / "node")
            url = create_agent(workdir / "node", "conformance")
        print("| suite | version | scenario | result (checks) |\n|---|---|---|---|")
        failed = 0
        for scenario in args.scenario or SCENARIOS:
            counts = run_scenario(runner, env, url, scenario, workdir / "results")
            failed += counts["FAILURE"]
            verdict = "pass" if counts["FAILURE"] == 0 else "FAIL"
            detail = ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)
            print(f"| MCP conformance | {RUNNER_VERSION} | {scenario} | {verdict} ({detail}) |")
        return 1 if failed else 0
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if args.keep:
            print(f"results kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
