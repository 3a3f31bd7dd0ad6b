"""The launcher reads manifests itself (coral/sessions/launch_manifest.py): argv, env, options."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from coral.sessions.launch_manifest import (
    InvalidLaunch,
    find_manifest,
    options_env,
    read_manifest,
    runtime_argv,
)
from coral.sessions.launcher import AgentLauncher

MANIFEST = """
edition = 4

[agent]
name = "tool"
version = "0.1.0"

[runtimes.executable]
path = "{path}"
arguments = {arguments}
env = {{ OMP_NUM_THREADS = "2" }}

[options.count]
type = "i32"
default = 3

[options.ratio]
type = "f64"

[options.loud]
type = "bool"
default = false

[options.token]
type = "string"
required = true
"""


def write(tmp_path: Path, path: str = "python3", arguments: str = '["-m", "tool.main"]') -> Path:
    file = tmp_path / "tool.toml"
    file.write_text(MANIFEST.format(path=path, arguments=arguments))
    return file


def test_a_python_module_runs_on_this_interpreter_and_a_command_as_given(tmp_path: Path) -> None:
    agent, env = read_manifest(write(tmp_path))
    assert runtime_argv(agent) == (sys.executable, "-m", "tool.main")
    assert env == {"OMP_NUM_THREADS": "2"}
    agent, _ = read_manifest(write(tmp_path, "/opt/tool/bin/run", '["--fast"]'))
    assert runtime_argv(agent) == ("/opt/tool/bin/run", "--fast")


def test_options_are_overrides_then_defaults_as_environment_strings(tmp_path: Path) -> None:
    agent, _ = read_manifest(write(tmp_path))
    env = options_env(agent, {"token": "s3cret", "ratio": 0.5, "loud": "yes"})
    assert env == {
        "CORAL_OPTION_COUNT": "3",
        "CORAL_OPTION_RATIO": "0.5",
        "CORAL_OPTION_LOUD": "true",
        "CORAL_OPTION_TOKEN": "s3cret",
    }
    assert options_env(agent, {"token": "t", "count": "7"})["CORAL_OPTION_COUNT"] == "7"


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({}, "options.token: required"),
        ({"token": "t", "colour": 1}, "options.colour: not declared"),
        ({"token": "t", "count": "many"}, "options.count: expected i32"),
        ({"token": "t", "loud": 2}, "options.loud: expected bool"),
        ({"token": 5}, "options.token: expected string"),
    ],
)
def test_bad_options_are_refused_naming_the_option(
    tmp_path: Path, overrides: dict[str, object], detail: str
) -> None:
    agent, _ = read_manifest(write(tmp_path))
    with pytest.raises(InvalidLaunch) as refused:
        options_env(agent, overrides)
    assert refused.value.detail.startswith(detail)


def test_manifests_resolve_by_path_or_registry_name(tmp_path: Path) -> None:
    file = write(tmp_path)
    assert find_manifest(str(file)) == file
    assert find_manifest("tool", tmp_path) == tmp_path / "tool.toml"
    with pytest.raises(InvalidLaunch, match="no such manifest"):
        find_manifest("missing", tmp_path)
    (tmp_path / "old.toml").write_text('edition = 1\n[agent]\nname = "old"\n')
    with pytest.raises(InvalidLaunch, match="edition"):
        read_manifest(tmp_path / "old.toml")
    (tmp_path / "noexe.toml").write_text(
        'edition = 4\n[agent]\nname = "noexe"\nversion = "0.1.0"\n[runtimes.docker]\nimage = "x"\n'
    )
    with pytest.raises(InvalidLaunch, match=r"runtimes\.executable: missing"):
        runtime_argv(read_manifest(tmp_path / "noexe.toml")[0])


def test_a_plan_carries_everything_the_child_needs_in_its_environment(tmp_path: Path) -> None:
    launcher = AgentLauncher("http://127.0.0.1:9", tmp_path / "keys", tmp_path / "logs")
    launcher.registry_dir = tmp_path
    write(tmp_path)
    spec = launcher.plan("tool", 2, {"token": "t"}, "tool-b")
    assert spec.name == "tool-b" and spec.replicas == 2
    assert spec.env["CORAL_NODE_URL"] == "http://127.0.0.1:9"
    assert spec.env["CORAL_AGENT_NAME"] == "tool-b"
    assert spec.env["CORAL_AGENT_KEY_FILE"] == str(tmp_path / "keys" / "tool-b.key")
    assert spec.env["CORAL_AGENT_MANIFEST"] == str((tmp_path / "tool.toml").resolve())
    assert spec.env["OMP_NUM_THREADS"] == "2" and spec.env["CORAL_OPTION_TOKEN"] == "t"
    with pytest.raises(InvalidLaunch, match=r"^name:"):
        launcher.plan("tool", 1, {"token": "t"}, "../escape")


def test_every_shipped_manifest_plans() -> None:
    launcher = AgentLauncher("http://127.0.0.1:9", Path("keys"), Path("logs"))
    for name in ("echo", "trm", "agentflow", "opentslm"):
        spec = launcher.plan(name)
        assert spec.argv[:2] == (sys.executable, "-m") and spec.env["CORAL_AGENT_NAME"] == name
