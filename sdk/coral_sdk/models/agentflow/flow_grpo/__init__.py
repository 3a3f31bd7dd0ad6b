"""Flow-GRPO for the AgentFlow planner (needs torch): advantages, loss, policy, trainer."""

from coral_sdk.models.agentflow.flow_grpo.advantage import broadcast_to_turns, group_advantages

__all__ = ["broadcast_to_turns", "group_advantages"]
