"""Flow-GRPO: on-policy training of the planner inside the live AgentFlow loop.

Per iteration: for each query, sample a group of G full multi-turn rollouts
with the real solver (frozen executor, verifier, generator; real tools), score
each final answer with an exact-match reward, normalise rewards within the
group, broadcast each trajectory's advantage to all of its planner turns, and
take a few clipped-surrogate steps with a KL penalty to the frozen initial
policy.
"""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from coral_sdk.models.agentflow.flow_grpo.advantage import broadcast_to_turns, group_advantages
from coral_sdk.models.agentflow.flow_grpo.frozen_modules import (
    PUZZLE_AGENT,
    GuessingEngine,
    LocalPuzzleAgent,
    RuleExecutor,
    RuleGenerator,
    RuleVerifier,
)
from coral_sdk.models.agentflow.flow_grpo.objective import LossTerms, flow_grpo_loss
from coral_sdk.models.agentflow.flow_grpo.policy import (
    PolicyPlanner,
    StateFeaturizer,
    ToolChoicePolicy,
    TurnSample,
)
from coral_sdk.models.agentflow.flow_grpo.tasks import Task, exact_match_reward, generate_tasks
from coral_sdk.models.agentflow.solver import FlowConfig, Solver
from coral_sdk.models.agentflow.tools.base import Tool, Toolbox, ToolMetadata
from coral_sdk.models.agentflow.tools.base_generator import BaseGeneratorTool
from coral_sdk.models.agentflow.tools.calculator import PythonCalculatorTool
from coral_sdk.models.agentflow.tools.coral_agent import CallCoralAgentTool, CoralAgentTool
from coral_sdk.models.agentflow.tools.search import DocumentSearchTool


@dataclass(frozen=True)
class FlowGRPOConfig:
    """Flow-GRPO hyperparameters (paper: G=8, clip 0.2/0.3, KL 0.001, 3 tool steps)."""

    iterations: int = 40
    queries_per_iteration: int = 8
    group_size: int = 8
    clip_low: float = 0.2
    clip_high: float = 0.3
    kl_coef: float = 0.001
    learning_rate: float = 0.01
    updates_per_iteration: int = 2
    max_steps: int = 3
    hidden_size: int = 32
    task_pool_size: int = 60
    seed: int = 0


@dataclass(frozen=True)
class Trajectory:
    """One rollout: its planner turns, final answer and outcome reward."""

    turns: list[TurnSample]
    answer: str
    reward: float


@dataclass(frozen=True)
class IterationStats:
    """What one training iteration did."""

    iteration: int
    mean_reward: float
    loss: float
    kl: float
    clip_fraction: float
    mean_turns: float


class MemoizedTool:
    """Caches a deterministic tool's results by arguments, so repeated rollouts stay cheap.

    The calculator still runs each distinct command once in its sandbox.
    """

    def __init__(self, tool: Tool) -> None:
        self.tool = tool
        self.metadata: ToolMetadata = tool.metadata
        self._results: dict[str, Any] = {}

    async def execute(self, **arguments: Any) -> Any:
        """Return the cached result for these arguments, or run the tool once."""
        key = repr(sorted(arguments.items()))
        if key not in self._results:
            self._results[key] = await self.tool.execute(**arguments)
        return self._results[key]


def demo_toolbox(
    corpus_dir: Path | None = None,
    *,
    coral: CoralAgentTool | None = None,
    puzzle_agent: str = PUZZLE_AGENT,
) -> Toolbox:
    """Calculator, document search, a guessing base generator and Coral agents (TRM).

    ``coral`` reaches the puzzle agent (named ``puzzle_agent``): the local
    stand-in while training, the network (``CoralNetworkTool``) when the
    trained planner is served.
    """
    agents = {puzzle_agent: "solves Sudoku; request {'task': 'sudoku6', 'grid': [[...]]}"}
    return Toolbox.of(
        [
            MemoizedTool(PythonCalculatorTool()),
            DocumentSearchTool(corpus_dir, default_top_k=2),
            BaseGeneratorTool(GuessingEngine()),
            CallCoralAgentTool(coral or LocalPuzzleAgent(), agents),
        ]
    )


class FlowGRPOTrainer:
    """Trains a :class:`ToolChoicePolicy` planner with Flow-GRPO on generated tasks."""

    def __init__(
        self,
        config: FlowGRPOConfig | None = None,
        *,
        toolbox: Toolbox | None = None,
        tasks: Sequence[Task] | None = None,
    ) -> None:
        self.config = config or FlowGRPOConfig()
        torch.manual_seed(self.config.seed)
        self.toolbox = toolbox or demo_toolbox()
        pool = tasks or generate_tasks(self.config.task_pool_size, seed=self.config.seed)
        self.tasks = list(pool)
        self.featurizer = StateFeaturizer(self.toolbox.names, self.config.max_steps)
        self.policy = ToolChoicePolicy(
            self.featurizer.size, len(self.toolbox.names), self.config.hidden_size
        )
        self.reference = copy.deepcopy(self.policy).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.config.learning_rate)
        self.sampler = torch.Generator().manual_seed(self.config.seed)
        self._task_rng = random.Random(self.config.seed)
        self._executor = RuleExecutor(self.toolbox)
        self._verifier = RuleVerifier()
        self._generator = RuleGenerator()
        self._flow = FlowConfig(
            max_steps=self.config.max_steps,
            max_time_s=60.0,
            max_result_chars=8000,
            output_types=frozenset({"direct"}),
        )

    async def rollout(self, task: Task, *, greedy: bool = False) -> Trajectory:
        """Run the live solver once with the current policy as planner and score it."""
        planner = PolicyPlanner(self.policy, self.featurizer, self.sampler, greedy=greedy)
        solver = Solver(planner, self._executor, self._verifier, self._generator, self._flow)
        result = await solver.solve(task.question)
        answer = result.direct_output or ""
        return Trajectory(planner.turns, answer, exact_match_reward(answer, task.answer))

    async def train_iteration(self, iteration: int) -> IterationStats:
        """Sample groups for a batch of queries, then apply the Flow-GRPO update."""
        batch = self._task_rng.sample(self.tasks, self.config.queries_per_iteration)
        groups = await asyncio.gather(
            *(
                asyncio.gather(*(self.rollout(task) for _ in range(self.config.group_size)))
                for task in batch
            )
        )
        trajectories: list[Trajectory] = []
        advantages: list[float] = []
        for group in groups:
            trajectories.extend(group)
            advantages.extend(group_advantages([trajectory.reward for trajectory in group]))
        loss, kl, clip_fraction = self.update(trajectories, advantages)
        rewards = [trajectory.reward for trajectory in trajectories]
        turns = [len(trajectory.turns) for trajectory in trajectories]
        return IterationStats(
            iteration,
            sum(rewards) / len(rewards),
            loss,
            kl,
            clip_fraction,
            sum(turns) / len(turns),
        )

    def update(
        self, trajectories: Sequence[Trajectory], advantages: Sequence[float]
    ) -> tuple[float, float, float]:
        """Several clipped policy-gradient steps on one batch of rollouts (loss, KL, clip frac)."""
        terms = self.policy_steps(trajectories, advantages)
        if terms is None:
            return 0.0, 0.0, 0.0
        # The one device-to-host sync per iteration: diagnostics for the log.
        return float(terms.loss.detach()), float(terms.kl), float(terms.clip_fraction)

    def policy_steps(
        self, trajectories: Sequence[Trajectory], advantages: Sequence[float]
    ) -> LossTerms | None:
        """The optimizer steps of ``update``, on the policy's device, without host reads."""
        turn_counts = [len(trajectory.turns) for trajectory in trajectories]
        samples = [turn for trajectory in trajectories for turn in trajectory.turns]
        if not samples:
            return None
        device = next(self.policy.parameters()).device
        features = torch.tensor([sample.features for sample in samples], device=device)
        actions = torch.tensor([sample.action for sample in samples], device=device)
        logp_old = torch.tensor([sample.logp_old for sample in samples], device=device)
        per_turn_advantage = torch.tensor(
            broadcast_to_turns(advantages, turn_counts), device=device
        )
        trajectory_index = torch.repeat_interleave(
            torch.arange(len(trajectories), device=device),
            torch.tensor(turn_counts, device=device),
            output_size=len(samples),
        )
        with torch.no_grad():
            logp_ref = self.reference.log_probs(features, actions)
        terms = None
        for _ in range(self.config.updates_per_iteration):
            logp_new = self.policy.log_probs(features, actions)
            terms = flow_grpo_loss(
                logp_new,
                logp_old,
                logp_ref,
                per_turn_advantage,
                trajectory_index,
                trajectories=len(trajectories),
                clip_low=self.config.clip_low,
                clip_high=self.config.clip_high,
                kl_coef=self.config.kl_coef,
            )
            self.optimizer.zero_grad()
            terms.loss.backward()  # type: ignore[no-untyped-call]
            self.optimizer.step()
        return terms

    async def evaluate(self, tasks: Sequence[Task] | None = None) -> float:
        """Greedy-policy accuracy over ``tasks`` (default: the training pool)."""
        chosen = list(tasks or self.tasks)
        results = await asyncio.gather(*(self.rollout(task, greedy=True) for task in chosen))
        return sum(trajectory.reward for trajectory in results) / len(results)

    async def train(
        self, on_iteration: Callable[[IterationStats], None] | None = None
    ) -> list[IterationStats]:
        """Run all iterations; report each to ``on_iteration`` as it finishes."""
        history = []
        for iteration in range(1, self.config.iterations + 1):
            stats = await self.train_iteration(iteration)
            history.append(stats)
            if on_iteration is not None:
                on_iteration(stats)
        return history
