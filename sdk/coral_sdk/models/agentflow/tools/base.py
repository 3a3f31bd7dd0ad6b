"""The tool interface the planner sees, and the toolbox that runs tools safely.

Metadata mirrors AgentFlow's ``BaseTool.get_metadata()`` (name, description,
input types, output type, demo commands) with a JSON-schema for the inputs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from coral_sdk.models.agentflow.errors import InvalidToolCommand, ToolNotFound


@dataclass(frozen=True)
class ToolDemo:
    """One example command shown to the planner and executor."""

    command: str
    description: str


@dataclass(frozen=True)
class ToolMetadata:
    """What a model is told about a tool before choosing or calling it."""

    name: str
    description: str
    input_schema: Mapping[str, Any]
    output_type: str
    demo_commands: tuple[ToolDemo, ...] = ()
    version: str = "1.0"
    limitations: str = ""

    def to_prompt_dict(self) -> dict[str, Any]:
        """The ``get_metadata()``-shaped dict placed in planner and executor prompts."""
        properties = self.input_schema.get("properties", {})
        return {
            "tool_name": self.name,
            "tool_description": self.description,
            "tool_version": self.version,
            "input_types": {
                name: spec.get("description", spec.get("type", "any"))
                for name, spec in properties.items()
            },
            "output_type": self.output_type,
            "demo_commands": [
                {"command": demo.command, "description": demo.description}
                for demo in self.demo_commands
            ],
            "limitations": self.limitations,
        }


@runtime_checkable
class Tool(Protocol):
    """A capability the executor can invoke with keyword arguments."""

    metadata: ToolMetadata

    async def execute(self, **arguments: Any) -> Any:
        """Run the tool and return a JSON-serialisable result."""
        ...


@dataclass
class Toolbox:
    """The tools enabled for one solver, looked up by name."""

    tools: dict[str, Tool] = field(default_factory=dict)

    @classmethod
    def of(cls, tools: Iterable[Tool]) -> Toolbox:
        """Build a toolbox from tool instances (names must be unique)."""
        box = cls()
        for tool in tools:
            if tool.metadata.name in box.tools:
                raise ValueError(f"duplicate tool name {tool.metadata.name!r}")
            box.tools[tool.metadata.name] = tool
        return box

    @property
    def names(self) -> list[str]:
        """Tool names in registration order."""
        return list(self.tools)

    def metadata(self) -> dict[str, dict[str, Any]]:
        """Prompt-ready metadata for every tool, keyed by name."""
        return {name: tool.metadata.to_prompt_dict() for name, tool in self.tools.items()}

    def get(self, name: str) -> Tool:
        """Return the named tool or raise ToolNotFound."""
        try:
            return self.tools[name]
        except KeyError:
            raise ToolNotFound(f"no tool named {name!r}; have {self.names}") from None

    async def execute(self, name: str, arguments: Mapping[str, Any], timeout_s: float) -> Any:
        """Validate arguments against the schema and run the tool under a wall-clock timeout.

        Raises ToolNotFound, InvalidToolCommand, or TimeoutError; tool exceptions propagate.
        """
        tool = self.get(name)
        check_arguments(tool.metadata, arguments)
        async with asyncio.timeout(timeout_s):
            return await tool.execute(**arguments)


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list, tuple),
}


def check_arguments(metadata: ToolMetadata, arguments: Mapping[str, Any]) -> None:
    """Enforce required names, unknown names and top-level JSON types of the input schema."""
    schema = metadata.input_schema
    properties: Mapping[str, Any] = schema.get("properties", {})
    missing = [name for name in schema.get("required", []) if name not in arguments]
    if missing:
        raise InvalidToolCommand(f"{metadata.name}: missing argument(s) {missing}")
    unknown = [name for name in arguments if name not in properties]
    if unknown:
        raise InvalidToolCommand(f"{metadata.name}: unknown argument(s) {unknown}")
    for name, value in arguments.items():
        expected = properties[name].get("type")
        if isinstance(expected, str) and expected in _JSON_TYPES:
            allowed = _JSON_TYPES[expected]
            wrong_bool = isinstance(value, bool) and bool not in allowed
            if not isinstance(value, allowed) or wrong_bool:
                raise InvalidToolCommand(f"{metadata.name}: {name} must be {expected}")
