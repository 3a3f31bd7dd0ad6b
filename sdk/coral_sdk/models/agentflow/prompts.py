"""Prompt builders for the four AgentFlow modules.

Each prompt opens with a ``Task:`` line naming the module's job, then gives
the query, the relevant memory and tool metadata, then the exact output format
the matching parser in :mod:`parsing` reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

SYSTEM_PROMPT = "You are a careful module inside an agentic system that solves tasks with tools."


def _tools_block(available: Sequence[str], metadata: Mapping[str, Any]) -> str:
    return (
        f"Available tools: {list(available)}\n"
        f"Metadata for the tools:\n{json.dumps(dict(metadata), indent=2, ensure_ascii=False)}"
    )


def query_analysis_prompt(
    question: str, available: Sequence[str], metadata: Mapping[str, Any]
) -> str:
    """Planner step 0: analyse the query before any tool is used."""
    return f"""Task: Analyze the query to understand what it asks and which skills and tools
it needs.

{_tools_block(available, metadata)}

Query: {question}

Write a concise analysis covering:
1. The main objective and what a complete answer must contain.
2. The skills needed (e.g. exact computation, factual lookup, reasoning).
3. Which tools are relevant and why; name tools exactly as listed.
4. Anything ambiguous or worth checking.
Do not solve the query yet."""


def next_step_prompt(
    question: str,
    query_analysis: str,
    memory_text: str,
    step: int,
    max_steps: int,
    available: Sequence[str],
    metadata: Mapping[str, Any],
) -> str:
    """Planner turn t: choose the next sub-goal and the one tool that serves it."""
    return f"""Task: Determine the optimal next step to address the query, given the analysis
and the actions taken so far.

Query: {question}
Query analysis: {query_analysis}

{_tools_block(available, metadata)}

Previous steps and their results (memory):
{memory_text}

This is step {step} of at most {max_steps}.

Instructions:
- Pick exactly one tool from the available tools for the next step.
- State a specific, achievable sub-goal for that tool, including any values taken from memory.
- Do not repeat an action that already succeeded; prefer the tool best suited to the gap left.

Respond in exactly this format:
Justification: <why this tool and sub-goal, based on the memory>
Context: <all facts from memory and the query that the tool needs>
Sub-Goal: <the specific goal of this step>
Tool Name: <one name from {list(available)}>"""


def tool_command_prompt(
    question: str, context: str, sub_goal: str, tool_name: str, tool_metadata: Mapping[str, Any]
) -> str:
    """Executor: turn the planner's sub-goal into one concrete tool call."""
    return f"""Task: Generate a precise command to execute the selected tool for the sub-goal.

Query: {question}
Context: {context}
Sub-Goal: {sub_goal}
Selected tool: {tool_name}
Tool metadata:
{json.dumps(dict(tool_metadata), indent=2, ensure_ascii=False)}

Instructions:
- Use only the inputs listed in the tool metadata, passed as keyword arguments.
- Every argument must be a literal value (string, number, list), written out in full.
- Follow the demo commands' shape exactly.

Respond in exactly this format:
Analysis: <how the sub-goal maps onto the tool's inputs>
Explanation: <what the command does>
Command:
```python
execution = tool.execute(<keyword>=<literal>, ...)
```"""


def verifier_prompt(
    question: str,
    query_analysis: str,
    memory_text: str,
    available: Sequence[str],
    metadata: Mapping[str, Any],
) -> str:
    """Verifier: decide whether the memory already answers the query."""
    return f"""Task: Evaluate whether the actions so far give enough verified information to
answer the query.

Query: {question}
Query analysis: {query_analysis}

{_tools_block(available, metadata)}

Memory (actions taken and their results):
{memory_text}

Check: is every part of the query addressed, are the results consistent with each
other and free of tool errors, and would another tool call add anything needed?

Explain briefly, then end with exactly one line:
Conclusion: STOP   (the memory suffices to answer)
or
Conclusion: CONTINUE   (more steps are needed)"""


def final_output_prompt(question: str, memory_text: str) -> str:
    """Generator: a complete, reasoned solution from the memory."""
    return f"""Task: Write the final solution to the query from the actions taken and their results.

Query: {question}

Actions taken (memory):
{memory_text}

Write a clear solution: summarise the key results, reason from them to the answer,
and state the answer. Rely on the memory; say so if it is incomplete."""


def direct_output_prompt(question: str, memory_text: str) -> str:
    """Generator: the short answer used for scoring."""
    return f"""Task: Give the direct answer to the query, using the actions taken and their results.

Query: {question}

Actions taken (memory):
{memory_text}

Reply with the answer only: a number, name or short phrase, with no explanation."""
