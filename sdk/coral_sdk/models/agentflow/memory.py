"""AgentFlow's evolving memory: an ordered list of action records.

Prompts carry this memory instead of the raw transcript, so the context each
module sees grows by one bounded record per turn rather than by whole model
outputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ActionRecord:
    """What happened in one turn: which tool, for which sub-goal, with what command and result."""

    step: int
    tool_name: str
    sub_goal: str
    command: str
    result: Any

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (result kept as is)."""
        return {
            "step": self.step,
            "tool_name": self.tool_name,
            "sub_goal": self.sub_goal,
            "command": self.command,
            "result": self.result,
        }


class Memory:
    """Ordered action records for one query, rendered compactly into prompts."""

    def __init__(self, *, max_result_chars: int = 2000) -> None:
        self.max_result_chars = max_result_chars
        self.query: str | None = None
        self.files: list[dict[str, str]] = []
        self._actions: list[ActionRecord] = []

    def set_query(self, query: str) -> None:
        """Record the query this memory belongs to."""
        self.query = query

    def add_file(self, name: str, description: str = "") -> None:
        """Note an input file the modules should know about."""
        self.files.append({"file_name": name, "description": description})

    def add_action(
        self, step: int, tool_name: str, sub_goal: str, command: str, result: Any
    ) -> ActionRecord:
        """Append one turn's record and return it."""
        record = ActionRecord(step, tool_name, sub_goal, command, result)
        self._actions.append(record)
        return record

    @property
    def actions(self) -> tuple[ActionRecord, ...]:
        """All records in the order they happened."""
        return tuple(self._actions)

    def __len__(self) -> int:
        return len(self._actions)

    def get_actions(self) -> dict[str, dict[str, Any]]:
        """``{"Action Step k": {tool_name, sub_goal, command, result}}`` with long results cut."""
        return {
            f"Action Step {record.step}": {
                "tool_name": record.tool_name,
                "sub_goal": record.sub_goal,
                "command": record.command,
                "result": self._bounded(record.result),
            }
            for record in self._actions
        }

    def to_prompt(self) -> str:
        """The memory as indented JSON for a prompt (``"No actions yet."`` when empty)."""
        if not self._actions:
            return "No actions yet."
        return json.dumps(self.get_actions(), indent=2, ensure_ascii=False, default=str)

    def _bounded(self, result: Any) -> Any:
        text = result if isinstance(result, str) else json.dumps(result, default=str)
        if len(text) <= self.max_result_chars:
            return result
        omitted = len(text) - self.max_result_chars
        return f"{text[: self.max_result_chars]} ... [{omitted} more characters omitted]"
