"""The AgentFlow loop end to end.

The model side is a scripted OpenAI-compatible HTTP server on 127.0.0.1 (see
conftest): the one allowed stand-in, since no LLM service runs here. Engine
client, parsing, memory, solver and tools (sandboxed calculator, BM25) are real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from coral_sdk.models.agentflow import (
    FlowConfig,
    OpenAICompatibleEngine,
    OpenAIEngineConfig,
    QueryAnalyzed,
    SolveResult,
    StepPlanned,
    TurnCompleted,
    build_solver,
    default_tools,
)
from coral_sdk.models.agentflow.solver import TOOL_NOT_FOUND_RESULT
from tests.sdk.models.agentflow.scripted_llm import Reply, ScriptedLLM


@pytest.fixture
async def engine(scripted_llm: ScriptedLLM) -> AsyncIterator[OpenAICompatibleEngine]:
    config = OpenAIEngineConfig(
        base_url=scripted_llm.base_url, model="scripted", max_retries=1, backoff_initial_s=0.01
    )
    async with OpenAICompatibleEngine(config) as client:
        yield client


def plan(tool: str, sub_goal: str, context: str = "none") -> str:
    return f"Justification: because.\nContext: {context}\nSub-Goal: {sub_goal}\nTool Name: {tool}"


def command(call: str) -> str:
    return f"Analysis: simple.\nExplanation: run it.\nCommand:\n```python\nexecution = {call}\n```"


async def test_calculator_turn_then_stop_yields_answer_and_events(
    scripted_llm: ScriptedLLM, engine: OpenAICompatibleEngine
) -> None:
    scripted_llm.script = {
        "analysis": ["Needs exact arithmetic; python_calculator fits."],
        "planner": [plan("python_calculator", "Compute 37 * 48 + 12")],
        "executor": [command('tool.execute(code="37 * 48 + 12")')],
        "verifier": ["The calculation answers it.\nConclusion: STOP"],
        "final": ["37 * 48 = 1776, plus 12 is 1788."],
        "direct": ["1788"],
    }
    events: list[object] = []
    solver = build_solver(engine, tools=default_tools(engine))
    result = await solver.solve("What is 37 * 48 + 12?", on_event=events.append)

    assert result.stop_reason == "verifier_stop"
    assert result.step_count == 1
    assert result.direct_output == "1788"
    [action] = result.memory
    assert action.tool_name == "python_calculator"
    assert action.result["result"] == "1788"  # computed by the real sandboxed calculator
    assert [type(event) for event in events] == [
        QueryAnalyzed,
        StepPlanned,
        TurnCompleted,
        SolveResult,
    ]
    assert result.problems == []


async def test_memory_grows_one_record_per_turn_and_reaches_later_prompts(
    scripted_llm: ScriptedLLM, engine: OpenAICompatibleEngine
) -> None:
    scripted_llm.script = {
        "analysis": ["Look up, then compute."],
        "planner": [
            plan("document_search", "Find the population of Zarnovia"),
            plan("python_calculator", "Add 120 to 982154", context="population 982154"),
        ],
        "executor": [
            command('tool.execute(query="population of Zarnovia")'),
            command('tool.execute(code="982154 + 120")'),
        ],
        "verifier": ["Need the sum.\nConclusion: CONTINUE", "Done.\nConclusion: STOP"],
        "final": ["982274"],
        "direct": ["982274"],
    }
    solver = build_solver(engine, tools=default_tools(engine))
    result = await solver.solve("What is the population of Zarnovia plus 120?")

    assert [record.tool_name for record in result.memory] == [
        "document_search",
        "python_calculator",
    ]
    assert result.memory[0].result[0]["title"] == "Zarnovia"  # real BM25 hit
    first_plan, second_plan = scripted_llm.prompts("planner")
    assert "No actions yet." in first_plan
    assert "Action Step 1" in second_plan and "982154" in second_plan
    assert "Action Step 2" in scripted_llm.prompts("verifier")[1]
    assert "Action Step 2" in scripted_llm.prompts("direct")[0]
    assert result.direct_output == "982274"


async def test_verifier_stop_in_markdown_ends_loop_before_the_turn_limit(
    scripted_llm: ScriptedLLM, engine: OpenAICompatibleEngine
) -> None:
    scripted_llm.script = {
        "planner": [plan("base_generator", "Answer")],
        "executor": [command('tool.execute(query="Say hi")')],
        "other": ["hi"],
        "verifier": ["All good.\n**Conclusion:** **STOP**"],
        "direct": ["hi"],
    }
    solver = build_solver(engine, tools=default_tools(engine), config=FlowConfig(max_steps=5))
    result = await solver.solve("Say hi")
    assert result.stop_reason == "verifier_stop"
    assert result.step_count == 1
    assert result.memory[0].result == "hi"


async def test_turn_limit_bounds_the_loop(
    scripted_llm: ScriptedLLM, engine: OpenAICompatibleEngine
) -> None:
    scripted_llm.script = {
        "planner": [plan("python_calculator", "Compute")],
        "executor": [command('tool.execute(code="1 + 1")')],
        "verifier": ["Conclusion: CONTINUE"],
        "direct": ["2"],
    }
    solver = build_solver(engine, tools=default_tools(engine), config=FlowConfig(max_steps=3))
    result = await solver.solve("What is 1 + 1?")
    assert result.stop_reason == "max_steps"
    assert result.step_count == 3
    assert [record.step for record in result.memory] == [1, 2, 3]
    assert len(scripted_llm.prompts("planner")) == 3


async def test_time_limit_cuts_a_slow_turn_and_still_answers(
    scripted_llm: ScriptedLLM, engine: OpenAICompatibleEngine
) -> None:
    scripted_llm.script = {
        "planner": [Reply(plan("python_calculator", "Compute"), delay_s=0.2)],
        "executor": [command('tool.execute(code="2 * 3")')],
        "verifier": ["Conclusion: CONTINUE"],
        "direct": ["6"],
    }
    config = FlowConfig(max_steps=50, max_time_s=0.6, output_types=frozenset({"direct"}))
    solver = build_solver(engine, tools=default_tools(engine), config=config)
    # The time limit is what stopped it (not the 50-step limit); wait_for only guards a hang.
    result = await asyncio.wait_for(solver.solve("What is 2 * 3?"), 120)
    assert result.stop_reason == "max_time"
    assert 1 <= result.step_count < 50
    assert result.direct_output == "6"


async def test_malformed_model_output_is_recorded_and_the_loop_continues(
    scripted_llm: ScriptedLLM, engine: OpenAICompatibleEngine
) -> None:
    scripted_llm.script = {
        "analysis": ["???"],
        "planner": [
            "I think we should probably do something clever here.",  # no Tool Name at all
            plan("web_search", "Search the web"),  # a tool we do not have
            plan("python_calculator", "Compute"),
        ],
        "executor": ["Sure! Here is what I would do: call the calculator."],  # no command
        "verifier": ["Hmm, hard to say.", "not sure", "Conclusion: STOP"],
        "final": ["unknown"],
        "direct": ["unknown"],
    }
    solver = build_solver(engine, tools=default_tools(engine), config=FlowConfig(max_steps=4))
    result = await solver.solve("What is 6 * 7?")

    assert result.stop_reason == "verifier_stop"
    assert result.step_count == 3
    first, second, third = result.memory
    assert first.tool_name == "unknown" and first.result == TOOL_NOT_FOUND_RESULT
    assert second.tool_name == "web_search"  # the memory shows the planner its mistake
    assert "error" in third.result and "tool command" in third.result["error"]
    joined = "\n".join(result.problems)
    assert "no 'Tool Name:' field" in joined
    assert "unknown tool 'web_search'" in joined
    assert "no clear STOP/CONTINUE" in joined
    assert result.direct_output == "unknown"


async def test_engine_refusal_stops_cleanly_with_a_recorded_problem(
    scripted_llm: ScriptedLLM, engine: OpenAICompatibleEngine
) -> None:
    scripted_llm.script = {"analysis": [Reply(status=401)], "direct": [Reply(status=401)]}
    solver = build_solver(engine, tools=default_tools(engine))
    result = await solver.solve("Anything")
    assert result.stop_reason == "error"
    assert result.step_count == 0
    assert any("engine_rejected" in problem for problem in result.problems)
    assert result.direct_output is None
