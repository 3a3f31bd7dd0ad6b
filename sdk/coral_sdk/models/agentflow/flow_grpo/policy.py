"""A tiny trainable planner: a softmax policy over tools given features of the state.

The state is AgentFlow's planner input ``s_t = (query, memory_t, step)``; the
action is the tool for the next sub-goal. :class:`PolicyPlanner` plugs the
policy into the real solver loop and records ``(features, action, log-prob)``
for every turn so Flow-GRPO can update it.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from coral_sdk.models.agentflow.memory import Memory
from coral_sdk.models.agentflow.parsing import PlannedStep

_TOKEN = re.compile(r"[a-z]+|\d+|[+\-*/]")


class StateFeaturizer:
    """Fixed-size features: hashed query words, step, tools used, last result's shape."""

    def __init__(self, tool_names: Sequence[str], max_steps: int, hash_dim: int = 64) -> None:
        self.tool_names = list(tool_names)
        self.max_steps = max_steps
        self.hash_dim = hash_dim

    @property
    def size(self) -> int:
        """Length of a feature vector."""
        return self.hash_dim + self.max_steps + 2 * len(self.tool_names) + 2

    def features(self, question: str, memory: Memory, step: int) -> list[float]:
        """Encode one planner state."""
        vector = [0.0] * self.size
        for token in _TOKEN.findall(question.lower()):
            word = "<num>" if token.isdigit() else token
            vector[zlib.crc32(word.encode()) % self.hash_dim] = 1.0
        offset = self.hash_dim
        vector[offset + min(step, self.max_steps) - 1] = 1.0
        offset += self.max_steps
        actions = memory.actions
        for record in actions:
            if record.tool_name in self.tool_names:
                vector[offset + self.tool_names.index(record.tool_name)] = 1.0
        offset += len(self.tool_names)
        if actions:
            last = actions[-1]
            if last.tool_name in self.tool_names:
                vector[offset + self.tool_names.index(last.tool_name)] = 1.0
            text = str(last.result)
            vector[offset + len(self.tool_names)] = 1.0 if "error" in text.lower() else 0.0
            vector[offset + len(self.tool_names) + 1] = 1.0 if re.search(r"\d", text) else 0.0
        return vector


class ToolChoicePolicy(nn.Module):
    """Two-layer MLP from state features to logits over the toolbox."""

    def __init__(self, feature_size: int, tool_count: int, hidden: int = 32) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(feature_size, hidden), nn.Tanh(), nn.Linear(hidden, tool_count)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``[batch, tool_count]``."""
        logits: torch.Tensor = self.layers(features)
        return logits

    def log_probs(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Log-probability of each chosen action."""
        log_softmax = torch.log_softmax(self.forward(features), dim=-1)
        return log_softmax.gather(1, actions.unsqueeze(1)).squeeze(1)


@dataclass
class TurnSample:
    """One planner decision: the state features, the tool index chosen, its log-prob then."""

    features: list[float]
    action: int
    logp_old: float


@dataclass
class PolicyPlanner:
    """PlannerModule that samples tools from a :class:`ToolChoicePolicy` (one per rollout)."""

    policy: ToolChoicePolicy
    featurizer: StateFeaturizer
    generator: torch.Generator | None = None
    greedy: bool = False
    turns: list[TurnSample] = field(default_factory=list)

    async def analyze_query(self, question: str) -> str:
        """The demo's fixed planner adds no analysis beyond restating the query."""
        return f"The query asks: {question}"

    async def next_step(
        self, question: str, query_analysis: str, memory: Memory, step: int, max_steps: int
    ) -> PlannedStep:
        """Sample (or take the best) tool and record the decision for training."""
        features = self.featurizer.features(question, memory, step)
        with torch.no_grad():
            logits = self.policy(torch.tensor([features]))[0]
            log_probs = torch.log_softmax(logits, dim=-1)
        if self.greedy:
            action = int(torch.argmax(log_probs))
        else:
            action = int(torch.multinomial(log_probs.exp(), 1, generator=self.generator))
        self.turns.append(TurnSample(features, action, float(log_probs[action])))
        tool = self.featurizer.tool_names[action]
        return PlannedStep(
            context=memory.to_prompt(),
            sub_goal=f"Use {tool} to make progress on: {question}",
            tool_name=tool,
            text=f"Tool Name: {tool}",
        )


#: Where the Flow-GRPO-trained planner ships (``coral-agent train agentflow --out`` layout).
SHIPPED_PLANNER = Path(__file__).resolve().parents[1] / "checkpoints" / "planner"
PLANNER_CONFIG = "planner.json"
PLANNER_WEIGHTS = "policy.safetensors"


def save_planner(
    directory: str | Path,
    policy: ToolChoicePolicy,
    featurizer: StateFeaturizer,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the policy weights (safetensors) and what rebuilds it (tool names, sizes)."""
    from coral_sdk.runtime.weights import save_weights

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    hidden = policy.layers[0].out_features
    config = {
        "tool_names": featurizer.tool_names,
        "max_steps": featurizer.max_steps,
        "hash_dim": featurizer.hash_dim,
        "hidden_size": hidden,
        **(extra or {}),
    }
    save_weights(
        {k: v.detach().cpu() for k, v in policy.state_dict().items()}, root / PLANNER_WEIGHTS
    )
    (root / PLANNER_CONFIG).write_text(json.dumps(config, indent=1) + "\n", "utf-8")
    return root


def load_planner(
    directory: str | Path = SHIPPED_PLANNER,
) -> tuple[ToolChoicePolicy, StateFeaturizer, dict[str, object]]:
    """The trained policy, its featurizer and the saved config (on CPU, eval mode)."""
    from coral_sdk.runtime.weights import load_weights

    root = Path(directory)
    config = json.loads((root / PLANNER_CONFIG).read_text("utf-8"))
    featurizer = StateFeaturizer(
        list(config["tool_names"]), int(config["max_steps"]), int(config["hash_dim"])
    )
    policy = ToolChoicePolicy(
        featurizer.size, len(featurizer.tool_names), int(config["hidden_size"])
    )
    policy.load_state_dict(load_weights(root / PLANNER_WEIGHTS))
    return policy.eval(), featurizer, config
