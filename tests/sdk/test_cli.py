"""``coral-agent`` on an install without the optional extras: help works, commands say what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from coral_sdk.cli import EXIT_USAGE, MissingExtra, missing_extra

#: Runs coral-agent with the named top-level modules made unimportable, as on a base install.
WITHOUT = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
from coral_sdk.cli import main
sys.exit(main(sys.argv[2:]))
"""

ROOT = Path(__file__).resolve().parents[2]
MODEL_MODULES = "torch,numpy,safetensors,transformers,peft,rank_bm25,tqdm,ray"


def coral_agent(*args: str, without: str = MODEL_MODULES) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT, without, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_help_works_without_the_models_extra():
    result = coral_agent("--help")
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout and "train" in result.stdout


def test_model_help_says_which_extra_is_missing():
    result = coral_agent("train", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "pip install 'coral-node[models]'" in text
    # The model CLIs import torch lazily, so every model's parser builds without the extra.
    assert all(f"train {name}" in text for name in ("trm", "opentslm", "agentflow"))


@pytest.mark.parametrize(
    "args",
    [
        ("train", "trm"),
        ("eval", "opentslm"),
        ("run", "agentflow", "what is 2+2?"),
        ("serve", "registry/trm.toml", "--node", "http://127.0.0.1:1"),
    ],
)
def test_a_command_needing_models_says_so_in_one_line_and_exits_2(args):
    result = coral_agent(*args)
    assert result.returncode == EXIT_USAGE
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert "pip install 'coral-node[models]'" in result.stderr
    assert result.stderr.startswith(f"coral-agent: {args[0]} ")


def test_missing_module_maps_to_its_extra():
    def extra_for(module: str) -> MissingExtra | None:
        return missing_extra(ModuleNotFoundError(f"No module named {module!r}", name=module))

    assert extra_for("torch.nn").extra == "models"
    assert extra_for("ray").extra == "ray"
    assert extra_for("asyncpg").extra == "postgres"
    assert extra_for("not_an_extra") is None
