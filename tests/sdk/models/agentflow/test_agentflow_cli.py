"""``coral-agent run agentflow`` and ``coral-agent train agentflow`` through the real CLI entry.

``coral_sdk.cli.main`` runs in a worker thread (it starts its own event loop)
while the scripted LLM server runs on the test's loop.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from coral_sdk.cli import main
from tests.sdk.models.agentflow.scripted_llm import ScriptedLLM


async def run_cli(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(arguments))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps at the terminal width


async def test_run_prints_each_turn_and_the_final_answer(
    scripted_llm: ScriptedLLM, capsys: pytest.CaptureFixture[str]
) -> None:
    scripted_llm.script = {
        "analysis": ["Arithmetic; use python_calculator."],
        "planner": ["Context: none\nSub-Goal: add [2] and 3\nTool Name: python_calculator"],
        "executor": ['Command:\n```python\nexecution = tool.execute(code="2 + 3")\n```'],
        "verifier": ["Conclusion: STOP"],
        "final": ["2 + 3 = 5"],
        "direct": ["5"],
    }
    code, output = await run_cli(
        capsys,
        "run", "agentflow", "What is 2 + 3?",
        "--base-url", scripted_llm.base_url, "--model", "scripted", "--max-steps", "3",
    )  # fmt: skip
    assert code == 0, output
    assert "query analysis" in output
    assert "step 1 -> python_calculator: add [2] and 3" in output  # brackets survive rich
    assert '"result": "5"' in output
    assert "verifier STOP" in output
    assert "answer" in output and "2 + 3 = 5" in output
    assert "stop: verifier_stop" in output
    assert scripted_llm.requests[0]["model"] == "scripted"


async def test_run_reports_an_unreachable_service_without_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, output = await run_cli(
        capsys,
        "run", "agentflow", "What is 2 + 3?",
        "--base-url", "http://127.0.0.1:9/v1", "--max-steps", "1", "--retries", "1",
    )  # fmt: skip
    assert code == 1
    assert "Traceback" not in output
    assert "cannot reach" in output


async def test_train_records_a_rising_reward_curve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    code, output = await run_cli(
        capsys,
        "train", "agentflow", "--iterations", "6", "--queries", "4", "--group-size", "8",
        "--lr", "0.02", "--tasks", "18", "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0, output
    assert "Flow-GRPO planner training" in output
    curve = json.loads((tmp_path / "reward_curve.json").read_text())
    assert len(curve) == 6
    assert curve[-1]["mean_reward"] > curve[0]["mean_reward"]
    from coral_sdk.models.agentflow.flow_grpo.policy import load_planner

    policy, featurizer, config = load_planner(tmp_path)
    assert featurizer.tool_names[-1] == "coral_agent"
    assert config["config"]["iterations"] == 6
    assert sum(p.numel() for p in policy.parameters()) > 0
