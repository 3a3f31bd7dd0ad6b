"""Model CLIs without the ``models`` extra: the parser builds and each command says what to install.

The extra's packages are installed here, so a child process hides them by
putting ``None`` in ``sys.modules`` (which makes ``import torch`` raise
``ModuleNotFoundError`` exactly as on a machine without them).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HIDE = (
    "import sys\n"
    "for name in ('torch', 'numpy', 'safetensors', 'tqdm', 'transformers', 'peft', 'rank_bm25'):\n"
    "    sys.modules[name] = None\n"
    "from coral_sdk.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def run_bare(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", HIDE, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


@pytest.mark.parametrize(
    "args",
    [
        ("train", "trm", "--steps", "1"),
        ("eval", "trm", "--checkpoint", "x"),
        ("eval", "opentslm"),
        ("train", "agentflow"),
        ("run", "agentflow", "What is 2 + 2?"),
    ],
)
def test_model_commands_name_the_missing_extra(args: tuple[str, ...]) -> None:
    proc = run_bare(*args)
    assert proc.returncode == 2, proc.stderr
    assert "needs the 'models' extra" in proc.stderr
    assert "pip install 'coral-node[models]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_model_help_works_without_the_extra() -> None:
    proc = run_bare("train", "trm", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--preset" in proc.stdout and "--time-limit" in proc.stdout
