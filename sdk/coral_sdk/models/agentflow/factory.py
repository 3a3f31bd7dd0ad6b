"""Assemble a ready-to-run AgentFlow solver from engines and tools."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from coral_sdk.models.agentflow.engines.base import LLMEngine
from coral_sdk.models.agentflow.modules import LLMExecutor, LLMGenerator, LLMPlanner, LLMVerifier
from coral_sdk.models.agentflow.solver import FlowConfig, Solver
from coral_sdk.models.agentflow.tools.base import Tool, Toolbox
from coral_sdk.models.agentflow.tools.base_generator import BaseGeneratorTool
from coral_sdk.models.agentflow.tools.calculator import PythonCalculatorTool


def default_tools(engine: LLMEngine, corpus_dir: Path | None = None) -> list[Tool]:
    """Calculator, local document search (the shipped corpus unless given) and base generator."""
    from coral_sdk.models.agentflow.tools.search import DocumentSearchTool  # needs rank-bm25

    return [PythonCalculatorTool(), DocumentSearchTool(corpus_dir), BaseGeneratorTool(engine)]


def build_solver(
    engine: LLMEngine,
    *,
    tools: Sequence[Tool] | None = None,
    config: FlowConfig | None = None,
    planner_engine: LLMEngine | None = None,
    verifier_engine: LLMEngine | None = None,
    executor_engine: LLMEngine | None = None,
    tool_timeout_s: float = 120.0,
) -> Solver:
    """A solver whose modules all use ``engine`` unless a per-module engine is given.

    Mirrors AgentFlow's ``model_engine=[planner_main, planner_fixed, verifier, executor]``:
    ``planner_engine`` is the trainable planner; query analysis and answers use ``engine``.
    """
    toolbox = Toolbox.of(tools if tools is not None else default_tools(engine))
    return Solver(
        planner=LLMPlanner(planner_engine or engine, toolbox, fixed_engine=engine),
        executor=LLMExecutor(executor_engine or engine, toolbox, tool_timeout_s=tool_timeout_s),
        verifier=LLMVerifier(verifier_engine or engine, toolbox),
        generator=LLMGenerator(engine),
        config=config,
    )
