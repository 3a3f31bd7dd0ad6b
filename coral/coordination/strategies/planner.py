"""Planner-led (AgentFlow-style): a planner splits work, workers report results.

The planner posts a data part ``{"plan": [{"task_id", "assignee",
"instruction"}, ...]}``; each assignee is notified. Workers answer with
``{"task_id", "result"}``. When every sub-task has a result the planner is
notified with a ``plan_complete`` event carrying all results, and the round
ends. Options: ``{"planner": did}`` (default: the thread's creator).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coral.coordination.errors import InvalidStrategyOptions
from coral.coordination.strategy import (
    BaseStrategy,
    Decision,
    SystemEvent,
    ThreadView,
    data_object_with_keys,
    data_with_key,
)
from coral.protocol.errors import Conflict, Forbidden, InvalidMessage, NotFound
from coral.protocol.message import Message

PLAN_COMPLETE = "plan_complete"
MAX_TASKS = 256


class PlannerLedStrategy(BaseStrategy):
    """One planner assigns sub-tasks; the round ends when all are answered."""

    name = "planner"

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Accept an optional ``planner`` agent id."""
        unknown = set(options) - {"planner"}
        if unknown:
            raise InvalidStrategyOptions(f"unknown planner options: {sorted(unknown)}")
        planner = options.get("planner")
        if planner is not None and not isinstance(planner, str):
            raise InvalidStrategyOptions("planner is an agent id")
        return {"planner": planner} if planner else {}

    def on_thread_created(self, view: ThreadView) -> Decision:
        """Check the planner is a participant and hand it the first turn."""
        planner = _planner(view)
        if planner not in view.participants:
            return Decision.refuse(
                InvalidStrategyOptions(f"planner {planner} is not in the thread")
            )
        return Decision(next_agents=(planner,), state={"round": 1, "tasks": []})

    def on_message(self, view: ThreadView, message: Message) -> Decision:
        """Accept plans from the planner and results from assignees; chat passes through."""
        plan = data_with_key(message, "plan")
        if plan is not None:
            return self._on_plan(view, message, plan)
        report = data_object_with_keys(message, "task_id", "result")
        if report is not None:
            return self._on_result(view, message, report)
        return Decision()

    def _on_plan(self, view: ThreadView, message: Message, plan: Any) -> Decision:
        if message.sender != _planner(view):
            return Decision.refuse(Forbidden("only the planner posts plans", reason="not_planner"))
        if any("result" not in task for task in view.state.get("tasks", [])):
            return Decision.refuse(
                Conflict("the current plan still has open tasks", reason="plan_in_progress")
            )
        try:
            tasks = _parse_plan(plan, view.participants)
        except InvalidMessage as error:
            return Decision.refuse(error)
        assignees = tuple(dict.fromkeys(task["assignee"] for task in tasks))
        state = {"round": view.state.get("round", 1), "tasks": tasks}
        return Decision(next_agents=assignees, state=state)

    def _on_result(self, view: ThreadView, message: Message, report: Mapping[str, Any]) -> Decision:
        tasks = [dict(task) for task in view.state.get("tasks", [])]
        task = next((t for t in tasks if t["task_id"] == report["task_id"]), None)
        if task is None:
            return Decision.refuse(NotFound("no such open task", reason="task_not_found"))
        if task["assignee"] != message.sender:
            return Decision.refuse(
                Forbidden(
                    f"task {task['task_id']} is assigned to another agent", reason="not_assignee"
                )
            )
        if "result" in task:
            return Decision.refuse(
                Conflict(f"task {task['task_id']} already has a result", reason="task_already_done")
            )
        task["result"] = report["result"]
        round_number = int(view.state.get("round", 1))
        if any("result" not in t for t in tasks):
            return Decision(state={"round": round_number, "tasks": tasks})
        results = [{k: t[k] for k in ("task_id", "assignee", "result")} for t in tasks]
        complete = SystemEvent(PLAN_COMPLETE, {"round": round_number, "results": results})
        return Decision(
            next_agents=(_planner(view),),
            events=(complete,),
            round_ended=True,
            state={"round": round_number + 1, "tasks": []},
        )


def _planner(view: ThreadView) -> str:
    return str(view.options.get("planner") or view.creator)


def _parse_plan(plan: Any, participants: tuple[str, ...]) -> list[dict[str, Any]]:
    if not isinstance(plan, list) or not 0 < len(plan) <= MAX_TASKS:
        raise InvalidMessage(f"a plan is a list of 1 to {MAX_TASKS} tasks", reason="invalid_plan")
    tasks: list[dict[str, Any]] = []
    for item in plan:
        if not isinstance(item, Mapping):
            raise InvalidMessage("each plan task is an object", reason="invalid_plan")
        task_id, assignee = item.get("task_id"), item.get("assignee")
        instruction = item.get("instruction")
        if not isinstance(task_id, str) or not task_id:
            raise InvalidMessage("each task has a task_id string", reason="invalid_plan")
        if not isinstance(instruction, str):
            raise InvalidMessage(f"task {task_id} needs an instruction", reason="invalid_plan")
        if assignee not in participants:
            raise InvalidMessage(
                f"task {task_id} is assigned to a non-participant", reason="invalid_plan"
            )
        if any(t["task_id"] == task_id for t in tasks):
            raise InvalidMessage(f"task id {task_id} appears twice", reason="invalid_plan")
        tasks.append({"task_id": task_id, "assignee": assignee, "instruction": instruction})
    return tasks
