"""Calling another Coral agent as a tool.

:class:`CoralAgentTool` is the interface the SDK's network client implements
(send a request to a named agent over the node, wait for its reply).
:class:`CallCoralAgentTool` presents any such implementation to the planner.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from coral_sdk.models.agentflow.errors import InvalidToolCommand
from coral_sdk.models.agentflow.tools.base import ToolDemo, ToolMetadata


@runtime_checkable
class CoralAgentTool(Protocol):
    """Send one request to another Coral agent and return its text reply."""

    async def call(self, agent_name: str, request: str | dict[str, Any]) -> str:
        """Deliver ``request`` to ``agent_name`` and await its answer.

        Raises a CoralError subclass when the agent cannot be reached or refuses.
        """
        ...


class CallCoralAgentTool:
    """Tool adapter: lets the planner delegate a sub-goal to a named Coral agent."""

    def __init__(self, caller: CoralAgentTool, agents: Mapping[str, str]) -> None:
        """``agents`` maps each callable agent's name to what it is good at."""
        self.caller = caller
        self.agents = dict(agents)
        roster = "; ".join(f"{name}: {skill}" for name, skill in self.agents.items())
        self.metadata = ToolMetadata(
            name="coral_agent",
            description=f"Asks another agent on the Coral network. Agents: {roster or 'none'}.",
            input_schema={
                "type": "object",
                "properties": {
                    "agent_name": {"type": "string", "description": "agent_name (str)"},
                    "request": {
                        "type": "string",
                        "description": "request (str) - what to ask, in plain words",
                    },
                },
                "required": ["agent_name", "request"],
            },
            output_type="str - the agent's reply",
            demo_commands=tuple(
                ToolDemo(
                    command=f'execution = tool.execute(agent_name="{name}", request="...")',
                    description=skill,
                )
                for name, skill in list(self.agents.items())[:2]
            ),
        )

    async def execute(self, **arguments: Any) -> str:
        """Forward the request to the named agent; unknown agents are a command error."""
        agent_name = str(arguments["agent_name"])
        if agent_name not in self.agents:
            raise InvalidToolCommand(f"unknown agent {agent_name!r}; known: {list(self.agents)}")
        request = arguments["request"]
        if not isinstance(request, str | dict):
            request = json.dumps(request)
        return await self.caller.call(agent_name, request)
