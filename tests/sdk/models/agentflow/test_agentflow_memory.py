"""The evolving memory: ordered action records, bounded when rendered into prompts."""

from __future__ import annotations

import json

from coral_sdk.models.agentflow import Memory


def test_records_keep_their_order_and_agentflow_shape() -> None:
    memory = Memory()
    memory.set_query("q")
    assert memory.to_prompt() == "No actions yet."
    memory.add_action(1, "document_search", "find X", 'tool.execute(query="X")', [{"title": "X"}])
    memory.add_action(2, "python_calculator", "add", 'tool.execute(code="1+1")', {"result": "2"})
    assert len(memory) == 2 and [record.step for record in memory.actions] == [1, 2]
    assert list(memory.get_actions()) == ["Action Step 1", "Action Step 2"]
    assert memory.get_actions()["Action Step 2"] == {
        "tool_name": "python_calculator",
        "sub_goal": "add",
        "command": 'tool.execute(code="1+1")',
        "result": {"result": "2"},
    }
    assert json.loads(memory.to_prompt())["Action Step 1"]["result"] == [{"title": "X"}]


def test_long_results_are_cut_in_prompts_but_kept_in_records() -> None:
    memory = Memory(max_result_chars=100)
    long_text = "word " * 1000
    record = memory.add_action(1, "base_generator", "talk", "cmd", long_text)
    shown = memory.get_actions()["Action Step 1"]["result"]
    assert shown.startswith(long_text[:100]) and "4900 more characters omitted" in shown
    assert record.result == long_text  # the full result stays available to callers
    assert len(memory.to_prompt()) < 400
