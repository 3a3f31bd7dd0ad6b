"""Tools the AgentFlow executor can call, each with metadata the planner reads."""

from coral_sdk.models.agentflow.tools.base import (
    Tool,
    Toolbox,
    ToolDemo,
    ToolMetadata,
    check_arguments,
)
from coral_sdk.models.agentflow.tools.base_generator import BaseGeneratorTool
from coral_sdk.models.agentflow.tools.calculator import PythonCalculatorTool
from coral_sdk.models.agentflow.tools.coral_agent import CallCoralAgentTool, CoralAgentTool
from coral_sdk.models.agentflow.tools.sandbox import SandboxLimits, SandboxResult, run_sandboxed

__all__ = [
    "BaseGeneratorTool",
    "CallCoralAgentTool",
    "CoralAgentTool",
    "PythonCalculatorTool",
    "SandboxLimits",
    "SandboxResult",
    "Tool",
    "ToolDemo",
    "ToolMetadata",
    "Toolbox",
    "check_arguments",
    "run_sandboxed",
]
