"""Launch construction: executable plans and Docker container bodies (no daemon needed)."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest

from coral.sessions.graph import GraphAgent
from coral.sessions.manifest import DockerRuntime, ExecutableRuntime, RegistryAgent
from coral.sessions.options import OptionSpec
from coral.sessions.runtime import (
    RuntimeUnavailable,
    container_url,
    docker_spec,
    executable_plan,
)

CORAL_ENV = {
    "CORAL_CONNECTION_URL": "http://127.0.0.1:5555/mcp/v1/s3cret/mcp",
    "CORAL_AGENT_ID": "worker",
    "CORAL_AGENT_SECRET": "s3cret",
    "CORAL_SESSION_ID": "sess",
    "CORAL_API_URL": "http://127.0.0.1:5555",
    "CORAL_RUNTIME_ID": "executable",
}


def graph_agent(tmp_path: Path, **runtimes: object) -> GraphAgent:
    options = {
        "COUNT": OptionSpec("COUNT", "i32"),
        "TOKEN": OptionSpec("TOKEN", "string", transport="fs"),
        "FLAGS": OptionSpec("FLAGS", "list[i8]"),
    }
    agent = RegistryAgent(
        edition=4, name="worker", version="1.0.0", options=options, path=tmp_path, **runtimes
    )  # type: ignore[arg-type]
    return GraphAgent(
        name="worker",
        agent=agent,
        runtime="executable",
        options={"COUNT": 3, "FLAGS": [1, -1]},
        description="",
    )


def test_executable_plan_runs_beside_its_toml_with_inherited_env_options_and_coral_vars(
    tmp_path: Path,
):
    program = tmp_path / "run-agent"
    program.write_text("#!/bin/sh\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    agent = graph_agent(tmp_path, executable=ExecutableRuntime("run-agent", ("--fast",)))
    plan = executable_plan(agent, CORAL_ENV, {"PATH": os.environ["PATH"], "HOME": "/h"})
    assert plan.argv == (str(program.resolve()), "--fast")
    assert plan.cwd == tmp_path
    assert plan.env["HOME"] == "/h" and plan.env["COUNT"] == "3" and plan.env["FLAGS"] == "1,-1"
    assert {k: plan.env[k] for k in CORAL_ENV} == CORAL_ENV


def test_fs_options_become_files_whose_paths_the_variable_lists(tmp_path: Path):
    program = tmp_path / "run-agent"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    agent = graph_agent(tmp_path, executable=ExecutableRuntime("run-agent"))
    agent = dataclasses.replace(agent, options={"TOKEN": "abc"})
    files = tmp_path / "files"
    files.mkdir()
    plan = executable_plan(agent, CORAL_ENV, {}, files)
    assert Path(plan.env["TOKEN"]).read_bytes() == b"abc"
    assert plan.files == (Path(plan.env["TOKEN"]),)


def test_a_missing_executable_is_refused_before_launch(tmp_path: Path):
    agent = graph_agent(tmp_path, executable=ExecutableRuntime("not-here-at-all"))
    with pytest.raises(RuntimeUnavailable) as caught:
        executable_plan(agent, CORAL_ENV, {"PATH": ""})
    assert "not-here-at-all" in caught.value.detail


def test_docker_body_carries_image_command_env_labels_and_host_gateway(tmp_path: Path):
    agent = graph_agent(tmp_path, docker=DockerRuntime("me/agent:1", ("python", "main.py"), "sse"))
    env = {**CORAL_ENV, "CORAL_RUNTIME_ID": "docker"}
    env["CORAL_CONNECTION_URL"] = container_url(env["CORAL_CONNECTION_URL"])
    body = docker_spec(agent, env, {"coral.session": "sess"})
    assert body["Image"] == "me/agent:1" and body["Cmd"] == ["python", "main.py"]
    assert "COUNT=3" in body["Env"] and "FLAGS=1,-1" in body["Env"]
    assert "CORAL_CONNECTION_URL=http://host.docker.internal:5555/mcp/v1/s3cret/mcp" in body["Env"]
    assert body["HostConfig"]["ExtraHosts"] == ["host.docker.internal:host-gateway"]
    assert body["Labels"] == {"coral.session": "sess"}


def test_docker_refuses_fs_options_and_agents_without_the_runtime(tmp_path: Path):
    with_fs = graph_agent(tmp_path, docker=DockerRuntime("img"))
    with_fs = dataclasses.replace(with_fs, options={"TOKEN": "x"})
    with pytest.raises(RuntimeUnavailable):
        docker_spec(with_fs, CORAL_ENV, {})
    with pytest.raises(RuntimeUnavailable):
        docker_spec(graph_agent(tmp_path, executable=ExecutableRuntime("x")), CORAL_ENV, {})


async def test_a_process_is_supervised_output_captured_and_stopped_with_sigterm_then_sigkill(
    tmp_path: Path,
):
    import asyncio
    import sys

    from coral.sessions.runtime import AgentOutput, ExecutableProcess, LaunchPlan

    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"  # refuses to stop politely
        "print('x' * 200000, flush=True)\n"  # one line longer than the reader's limit
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    output = AgentOutput()
    exits: list[int | None] = []
    process = ExecutableProcess(
        "stubborn", LaunchPlan((sys.executable, "-c", script), tmp_path, {}), output
    )
    await process.start(exits.append)
    for _ in range(600):
        if any(line.endswith("ready") for line in output.lines):
            break
        await asyncio.sleep(0.05)
    assert any(line.endswith("ready") for line in output.lines)
    await process.stop(grace_s=0.5)
    assert exits == [-9]  # SIGTERM ignored, so SIGKILL ended it
    assert list(output.lines)[-1] == "[coral] exited with code -9"
