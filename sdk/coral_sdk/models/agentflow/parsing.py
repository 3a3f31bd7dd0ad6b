"""Tolerant parsers for what the planner, executor and verifier models write.

Models drift from the requested format (markdown bold, JSON, missing fields,
chatter around code). Each parser extracts what it can and reports a problem
string instead of raising, except :func:`parse_tool_command`, whose failure
the executor records as the turn's result.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from coral_sdk.models.agentflow.errors import InvalidToolCommand


@dataclass(frozen=True)
class PlannedStep:
    """The planner's decision for one turn.

    ``tool_name`` is a toolbox name, or None when none could be read; then
    ``requested_tool`` keeps what the model wrote, so the memory shows its mistake.
    """

    context: str
    sub_goal: str
    tool_name: str | None
    text: str = ""
    problem: str | None = None
    requested_tool: str = ""


@dataclass(frozen=True)
class ParsedCommand:
    """A tool call read from executor output: the command text and its keyword arguments."""

    command: str
    arguments: dict[str, Any]
    explanation: str = ""


@dataclass(frozen=True)
class Verdict:
    """The verifier's decision: stop (enough information) or continue."""

    stop: bool
    text: str = ""
    problem: str | None = None


_LABELS = ("justification", "context", "sub-goal", "sub_goal", "subgoal", "tool name", "tool_name")
_LABEL_PATTERN = "|".join(re.escape(label) for label in _LABELS)
_FIELD = re.compile(
    rf"^[\s#>*_-]*({_LABEL_PATTERN})[\s*_]*:[\s*_]*(.*?)(?=^[\s#>*_-]*(?:{_LABEL_PATTERN})[\s*_]*:|\Z)",
    re.IGNORECASE | re.MULTILINE | re.DOTALL,
)


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def normalize_tool_name(candidate: str, available: Sequence[str]) -> str | None:
    """Map a model's spelling of a tool (``Python Calculator``, `python_calculator`) to its name."""
    squashed = _squash(candidate)
    if not squashed:
        return None
    by_squash = {_squash(name): name for name in available}
    if squashed in by_squash:
        return by_squash[squashed]
    # A sentence that mentions exactly one tool counts as choosing it.
    mentioned = [name for key, name in by_squash.items() if key and key in squashed]
    return mentioned[0] if len(mentioned) == 1 else None


def parse_planner_step(text: str, available: Sequence[str]) -> PlannedStep:
    """Read ``Context: ... Sub-Goal: ... Tool Name: ...`` (or the same keys as JSON)."""
    fields = _json_fields(text) or {}
    if "toolname" not in fields:
        fields = {
            _squash(label): value.strip().strip("*").strip()
            for label, value in _FIELD.findall(text)
        }
    context = fields.get("context", "")
    sub_goal = fields.get("subgoal", "")
    raw_tool = fields.get("toolname", "")
    tool = normalize_tool_name(raw_tool.splitlines()[0] if raw_tool else "", available)
    problem = None
    if not raw_tool:
        problem = "planner output has no 'Tool Name:' field"
        tool = _sole_tool_mentioned(text, available)
    elif tool is None:
        problem = f"planner chose unknown tool {raw_tool.splitlines()[0]!r}"
    if not sub_goal:
        sub_goal = context or text.strip()[:300]
    requested = raw_tool.splitlines()[0].strip(" `'\"*") if raw_tool else ""
    return PlannedStep(
        context, sub_goal, tool, text=text, problem=problem, requested_tool=requested
    )


def _sole_tool_mentioned(text: str, available: Sequence[str]) -> str | None:
    mentioned = [name for name in available if re.search(re.escape(name), text, re.IGNORECASE)]
    return mentioned[0] if len(mentioned) == 1 else None


def _json_fields(text: str) -> dict[str, str] | None:
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if not match:
        return None
    try:
        value = json.loads(match.group(0))
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    return {_squash(str(key)): str(item) for key, item in value.items()}


_CODE_BLOCK = re.compile(r"```(?:python|py)?\s*\n?(.*?)```", re.DOTALL | re.IGNORECASE)
_EXPLANATION = re.compile(r"explanation[\s*_]*:[\s*_]*(.*?)(?=\n\s*[*_]*command|\Z)", re.I | re.S)


def parse_tool_command(text: str) -> ParsedCommand:
    """Find ``tool.execute(name=literal, ...)`` in executor output (or a JSON argument object).

    Arguments must be literals: the command is parsed with ``ast``, never executed,
    so a model cannot run arbitrary code through the executor.
    Raises InvalidToolCommand when no usable call is present.
    """
    explanation_match = _EXPLANATION.search(text)
    explanation = explanation_match.group(1).strip() if explanation_match else ""
    candidates = [block.strip() for block in _CODE_BLOCK.findall(text)] + [text]
    last_problem = "no tool.execute(...) call found"
    for candidate in candidates:
        for source in _execute_snippets(candidate):
            try:
                arguments = _literal_keywords(source)
            except InvalidToolCommand as exc:
                last_problem = exc.detail
                continue
            return ParsedCommand(command=source, arguments=arguments, explanation=explanation)
    arguments_json = _json_arguments(text)
    if arguments_json is not None:
        return ParsedCommand(json.dumps(arguments_json), arguments_json, explanation)
    raise InvalidToolCommand(last_problem)


def _execute_snippets(text: str) -> list[str]:
    """Each ``tool.execute(...)`` call, ended at the first ``)`` that makes valid Python.

    Trying each closing parenthesis in turn copes with parentheses inside string
    arguments (``code="print(')')"``), which plain bracket counting gets wrong.
    """
    snippets = []
    for match in re.finditer(r"tool\s*\.\s*execute\s*\(", text):
        fallback = None
        for close in re.finditer(r"\)", text[match.end() - 1 :]):
            candidate = text[match.start() : match.end() - 1 + close.end()]
            fallback = fallback or candidate
            try:
                ast.parse(candidate, mode="eval")
            except SyntaxError:
                continue
            snippets.append(candidate)
            break
        else:
            if fallback is not None:
                snippets.append(fallback)  # reported as a syntax error by the caller
    return snippets


def _literal_keywords(source: str) -> dict[str, Any]:
    try:
        call = ast.parse(source, mode="eval").body
    except SyntaxError as exc:
        raise InvalidToolCommand(f"tool command is not valid Python: {exc.msg}") from None
    if not isinstance(call, ast.Call) or call.args:
        raise InvalidToolCommand("tool.execute takes keyword arguments only")
    arguments: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            raise InvalidToolCommand("tool.execute(**kwargs) is not supported")
        try:
            arguments[keyword.arg] = ast.literal_eval(keyword.value)
        except (ValueError, SyntaxError):
            raise InvalidToolCommand(
                f"argument {keyword.arg!r} must be a literal value, not an expression"
            ) from None
    return arguments


def _json_arguments(text: str) -> dict[str, Any] | None:
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if not match:
        return None
    try:
        value = json.loads(match.group(0))
    except ValueError:
        return None
    return value if isinstance(value, dict) and value else None


_CONCLUSION = re.compile(r"conclusion[\s*_]*:?[\s*_`]*(stop|continue)\b", re.IGNORECASE)


def parse_verdict(text: str) -> Verdict:
    """Read the verifier's final ``Conclusion: STOP|CONTINUE``; unclear means CONTINUE."""
    matches = _CONCLUSION.findall(text)
    if matches:
        return Verdict(stop=matches[-1].upper() == "STOP", text=text)
    words = {word.upper() for word in re.findall(r"\b(STOP|CONTINUE)\b", text)}
    if len(words) == 1:
        return Verdict(stop=words == {"STOP"}, text=text)
    return Verdict(stop=False, text=text, problem="verifier output has no clear STOP/CONTINUE")
