"""Flow-GRPO: advantages and loss against hand-worked numbers, tasks, and a short training run."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from coral_sdk.models.agentflow.flow_grpo import broadcast_to_turns, group_advantages  # noqa: E402
from coral_sdk.models.agentflow.flow_grpo.objective import flow_grpo_loss  # noqa: E402
from coral_sdk.models.agentflow.flow_grpo.tasks import (  # noqa: E402
    eval_integer_expression,
    exact_match_reward,
    generate_tasks,
    load_country_facts,
)
from coral_sdk.models.agentflow.flow_grpo.trainer import (  # noqa: E402
    FlowGRPOConfig,
    FlowGRPOTrainer,
)


def test_group_advantages_match_hand_worked_values() -> None:
    # mean 0.5, sample std sqrt(1/3) = 0.57735 -> +-0.86603
    assert group_advantages([1, 0, 0, 1]) == pytest.approx(
        [0.86603, -0.86603, -0.86603, 0.86603], abs=1e-4
    )
    # mean 0.5, sample std 0.5 -> -1, 0, 1
    assert group_advantages([0.0, 0.5, 1.0]) == pytest.approx([-1.0, 0.0, 1.0], abs=1e-5)
    # mean 0.25, sample std 0.5 -> (1 - 0.25) / 0.5 = 1.5, the rest -0.5
    assert group_advantages([1, 0, 0, 0]) == pytest.approx([1.5, -0.5, -0.5, -0.5], abs=1e-5)


def test_uniform_or_single_groups_carry_no_signal() -> None:
    assert group_advantages([1, 1, 1, 1]) == [0.0] * 4
    assert group_advantages([0.0]) == [0.0]
    assert group_advantages([]) == []


@given(st.lists(st.sampled_from([0.0, 1.0]), min_size=2, max_size=16))
def test_advantages_are_centred_and_scaled(rewards: list[float]) -> None:
    advantages = group_advantages(rewards)
    assert math.fsum(advantages) == pytest.approx(0.0, abs=1e-6)
    if len(set(rewards)) > 1:
        mean_square = math.fsum(a * a for a in advantages) / (len(rewards) - 1)
        assert mean_square == pytest.approx(1.0, rel=1e-4)


def test_advantage_is_broadcast_to_every_turn_of_its_trajectory() -> None:
    assert broadcast_to_turns([0.5, -1.0, 2.0], [2, 1, 3]) == [0.5, 0.5, -1.0, 2.0, 2.0, 2.0]
    with pytest.raises(ValueError):
        broadcast_to_turns([1.0], [1, 2])


def hand_worked_batch() -> dict[str, object]:
    # Trajectory 0 has two turns (A=+1), trajectory 1 one turn (A=-1); old = ref = 0.5.
    half = math.log(0.5)
    return {
        "logp_old": torch.tensor([half, half, half]),
        "logp_ref": torch.tensor([half, half, half]),
        "advantages": torch.tensor([1.0, 1.0, -1.0]),
        "trajectory_index": torch.tensor([0, 0, 1]),
    }


def test_clipped_surrogate_and_kl_match_hand_worked_values() -> None:
    # ratios 1.5, 0.5, 1.2 -> surrogates min(1.5, 1.3)=1.3, min(0.5, 0.8)=0.5, -1.2
    # per-trajectory means 0.9 and -1.2 -> -0.15; k3 KL per turn 0.072132, 0.306853, 0.015655
    # -> trajectory means 0.189492, 0.015655 -> 0.102574
    logp_new = torch.log(torch.tensor([0.75, 0.25, 0.6]))
    terms = flow_grpo_loss(
        logp_new, **hand_worked_batch(), clip_low=0.2, clip_high=0.3, kl_coef=0.001
    )  # type: ignore[arg-type]
    assert float(terms.surrogate) == pytest.approx(-0.15, abs=1e-6)
    assert float(terms.kl) == pytest.approx(0.102574, abs=1e-5)
    assert float(terms.loss) == pytest.approx(0.15 + 0.001 * 0.102574, abs=1e-6)
    assert float(terms.clip_fraction) == pytest.approx(2 / 3)


def test_objective_allocates_on_the_inputs_device_meta() -> None:
    # On "meta" any tensor created without device= lands on the CPU and mixing it
    # with meta inputs raises, and any host read-back (.item()) fails: the same
    # bugs that break the objective on CUDA.
    batch = {k: v.to("meta") for k, v in hand_worked_batch().items()}
    logp_new = torch.empty(3, device="meta", requires_grad=True)
    terms = flow_grpo_loss(logp_new, **batch, trajectories=2)  # type: ignore[arg-type]
    assert terms.loss.device.type == "meta"
    assert {t.device.type for t in (terms.surrogate, terms.kl, terms.clip_fraction)} == {"meta"}
    terms.loss.backward()
    assert logp_new.grad is not None and logp_new.grad.device.type == "meta"


def test_trainer_update_runs_with_the_policy_on_meta() -> None:
    from coral_sdk.models.agentflow.flow_grpo.policy import TurnSample
    from coral_sdk.models.agentflow.flow_grpo.trainer import (
        FlowGRPOConfig,
        FlowGRPOTrainer,
        Trajectory,
    )

    trainer = FlowGRPOTrainer(FlowGRPOConfig(task_pool_size=6, updates_per_iteration=1))
    size = trainer.featurizer.size
    turns = [TurnSample([0.0] * size, 1, -1.0), TurnSample([1.0] * size, 0, -1.2)]
    trajectories = [Trajectory(turns, "1", 1.0), Trajectory(turns[:1], "2", 0.0)]
    trainer.policy.to("meta")
    trainer.reference.to("meta")
    trainer.optimizer = torch.optim.SGD(trainer.policy.parameters(), lr=0.1)
    terms = trainer.policy_steps(trajectories, [1.0, -1.0])
    assert terms is not None and terms.loss.device.type == "meta"
    grads = [p.grad for p in trainer.policy.parameters()]
    assert all(g is not None and g.device.type == "meta" for g in grads)


def test_clipped_turns_get_no_gradient_and_unclipped_ones_do() -> None:
    logp_new = torch.log(torch.tensor([0.75, 0.25, 0.6])).requires_grad_(True)
    terms = flow_grpo_loss(logp_new, **hand_worked_batch(), kl_coef=0.0)  # type: ignore[arg-type]
    terms.loss.backward()
    assert logp_new.grad is not None
    assert float(logp_new.grad[0]) == 0.0  # ratio 1.5 above 1 + 0.3 with A > 0: clipped
    # d(-mean)/d logp for turn 1: -(1/2 turns)(1/2 trajectories) * ratio 0.5 * A 1 = -0.125
    assert float(logp_new.grad[1]) == pytest.approx(-0.125)


def test_generated_tasks_have_correct_answers_from_the_corpus() -> None:
    facts = {fact.name: fact for fact in load_country_facts()}
    assert len(facts) >= 20
    tasks = generate_tasks(30, seed=3)
    assert {task.kind for task in tasks} == {"arithmetic", "lookup", "compose", "puzzle"}
    for task in tasks:
        if task.kind == "puzzle":
            import numpy as np

            from coral_sdk.models.trm.tasks import sudoku

            grid = np.array(json.loads(task.question.split(": ", 1)[1]))
            solution = np.array(json.loads(task.answer))
            assert sudoku.is_minimal(grid) and sudoku.is_valid_solution(solution, grid)
            continue
        if task.kind == "arithmetic":
            expression = task.question.removeprefix("What is ").removesuffix("?")
            assert task.answer == str(eval_integer_expression(expression))
        else:
            name = next(name for name in facts if f" of {name}" in task.question)
            fact = facts[name]
            if task.kind == "lookup":
                assert task.answer in {fact.capital, str(fact.population), str(fact.founding_year)}
    assert eval_integer_expression("3 + 4 * 5 - 6") == 17
    assert exact_match_reward(" 1788.0 ", "1788") == 1.0
    assert exact_match_reward("Lumeport.", "lumeport") == 1.0
    assert exact_match_reward(None, "x") == 0.0


async def test_short_flow_grpo_run_raises_reward() -> None:
    config = FlowGRPOConfig(
        iterations=8, queries_per_iteration=6, group_size=8, task_pool_size=30, seed=0
    )
    trainer = FlowGRPOTrainer(config)
    before = await trainer.evaluate()
    history = await trainer.train()
    after = await trainer.evaluate()
    start = sum(stats.mean_reward for stats in history[:2]) / 2
    end = sum(stats.mean_reward for stats in history[-2:]) / 2
    assert end > start + 0.15, [round(stats.mean_reward, 3) for stats in history]
    assert after > before + 0.3
    assert all(1.0 <= stats.mean_turns <= config.max_steps for stats in history)
