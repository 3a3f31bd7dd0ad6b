"""Tolerant parsing of planner, executor and verifier output."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coral_sdk.models.agentflow import InvalidToolCommand
from coral_sdk.models.agentflow.parsing import (
    normalize_tool_name,
    parse_planner_step,
    parse_tool_command,
    parse_verdict,
)

TOOLS = ["python_calculator", "document_search", "base_generator"]


@pytest.mark.parametrize(
    ("text", "tool"),
    [
        ("Context: c\nSub-Goal: add\nTool Name: python_calculator", "python_calculator"),
        (
            "**Context:** c\n**Sub-Goal:** add\n**Tool Name:** `Python_Calculator`",
            "python_calculator",
        ),
        ("### Context: c\n### Sub-goal: look\n### Tool name: Document Search", "document_search"),
        ('{"context": "c", "sub_goal": "look", "tool_name": "document_search"}', "document_search"),
        (
            "Context: c\nSub-Goal: s\nTool Name: I will use base_generator for this.",
            "base_generator",
        ),
    ],
)
def test_planner_fields_are_read_in_common_formats(text: str, tool: str) -> None:
    step = parse_planner_step(text, TOOLS)
    assert step.tool_name == tool
    assert step.problem is None
    assert step.context == "c"


def test_multiline_fields_keep_their_text() -> None:
    text = "Context: first line\nsecond line\nSub-Goal: compute 2+2\nTool Name: python_calculator"
    step = parse_planner_step(text, TOOLS)
    assert step.context == "first line\nsecond line"
    assert step.sub_goal == "compute 2+2"


def test_unknown_or_missing_tool_is_reported_not_raised() -> None:
    unknown = parse_planner_step("Sub-Goal: s\nTool Name: web_search", TOOLS)
    assert unknown.tool_name is None and "web_search" in (unknown.problem or "")
    missing = parse_planner_step("I would search the documents.", TOOLS)
    assert missing.tool_name is None and missing.sub_goal == "I would search the documents."
    rescued = parse_planner_step("Let's use document_search next.", TOOLS)
    assert rescued.tool_name == "document_search" and rescued.problem is not None


def test_ambiguous_tool_mentions_choose_nothing() -> None:
    assert normalize_tool_name("python_calculator or document_search", TOOLS) is None
    assert normalize_tool_name("", TOOLS) is None


def test_tool_command_in_code_block_with_literal_keywords() -> None:
    text = (
        "Analysis: need sum.\nExplanation: adds numbers.\nCommand:\n```python\n"
        'execution = tool.execute(code="print(max(3, 4))", tags=["a"], n=2)\n```'
    )
    parsed = parse_tool_command(text)
    assert parsed.arguments == {"code": "print(max(3, 4))", "tags": ["a"], "n": 2}
    assert parsed.explanation == "adds numbers."
    assert parsed.command.startswith("tool.execute(")


def test_parentheses_inside_string_arguments_do_not_cut_the_call() -> None:
    text = r"""execution = tool.execute(code="print(')')\nmax(1, (2))") and some trailing words)"""
    assert parse_tool_command(text).arguments == {"code": "print(')')\nmax(1, (2))"}
    triple = 'execution = tool.execute(code="""x = (1 +\n2)\nx""")'
    assert parse_tool_command(triple).arguments == {"code": "x = (1 +\n2)\nx"}


def test_tool_command_without_code_fence_or_as_json() -> None:
    assert parse_tool_command('sure: tool.execute(query="x (y)")').arguments == {"query": "x (y)"}
    assert parse_tool_command('Command: {"query": "capital"}').arguments == {"query": "capital"}


@pytest.mark.parametrize(
    "text",
    [
        "no command here",
        "```python\nexecution = tool.execute(code=__import__('os').system('x'))\n```",
        "```python\nexecution = tool.execute('positional')\n```",
        "```python\nexecution = tool.execute(**args)\n```",
        "```python\nexecution = tool.execute(code=\n```",
    ],
)
def test_unusable_commands_raise_invalid_tool_command(text: str) -> None:
    with pytest.raises(InvalidToolCommand):
        parse_tool_command(text)


@pytest.mark.parametrize(
    ("text", "stop", "clear"),
    [
        ("Reasoning...\nConclusion: STOP", True, True),
        ("**Conclusion**: **CONTINUE**", False, True),
        ("We could STOP. Conclusion: stop... no wait. Conclusion: CONTINUE", False, True),
        ("Conclusion:\n`STOP`", True, True),
        ("Everything is present. STOP", True, True),
        ("maybe", False, False),
        ("STOP or CONTINUE?", False, False),
    ],
)
def test_verdicts(text: str, stop: bool, clear: bool) -> None:
    verdict = parse_verdict(text)
    assert verdict.stop is stop
    assert (verdict.problem is None) is clear


@given(st.text(max_size=400))
def test_parsers_never_crash_on_arbitrary_text(text: str) -> None:
    step = parse_planner_step(text, TOOLS)
    assert step.tool_name is None or step.tool_name in TOOLS
    parse_verdict(text)
    try:
        parse_tool_command(text)
    except InvalidToolCommand:
        pass
