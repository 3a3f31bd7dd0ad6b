"""TRM recursion: shapes, x injection, where gradients flow, halting, losses, EMA."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from coral_sdk.models.trm.config import TrmConfig
from coral_sdk.models.trm.ema import WeightEma
from coral_sdk.models.trm.losses import IGNORE_LABEL, act_loss, stablemax_cross_entropy
from coral_sdk.models.trm.model import TinyRecursiveModel
from coral_sdk.models.trm.training import _halting


def tiny_config(**overrides: Any) -> TrmConfig:
    values: dict[str, Any] = {
        "vocab_size": 6,
        "seq_len": 16,
        "hidden_size": 32,
        "num_heads": 4,
        "T": 3,
        "n": 2,
        "n_sup": 4,
        "puzzle_emb_len": 2,
    }
    values.update(overrides)
    return TrmConfig(**values)


def test_paper_defaults_are_the_typed_defaults() -> None:
    config = TrmConfig(vocab_size=11, seq_len=81)
    assert (config.hidden_size, config.num_heads, config.num_layers) == (512, 8, 2)
    assert (config.T, config.n, config.n_sup) == (3, 6, 16)
    assert config.effective_depth == 42


@pytest.mark.parametrize(
    ("mixer", "pos"), [("mlp", "none"), ("attention", "rope"), ("attention", "learned")]
)
def test_one_supervision_step_has_the_expected_shapes(mixer: str, pos: str) -> None:
    config = tiny_config(mixer=mixer, pos_encodings=pos)
    model = TinyRecursiveModel(config)
    out = model(torch.randint(1, 6, (5, 16)))
    assert out.logits.shape == (5, 16, 6)
    assert out.q_halt_logits.shape == (5,)
    assert out.carry.y.shape == out.carry.z.shape == (5, 18, 32)
    # The carry handed to the next supervision step is cut from the graph.
    assert not out.carry.y.requires_grad and not out.carry.z.requires_grad
    second = model(torch.randint(1, 6, (5, 16)), out.carry)
    assert second.logits.shape == (5, 16, 6)


class NetSpy(nn.Module):
    """Wraps the shared network and records every call."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.calls: list[dict[str, Any]] = []

    def forward(self, state: torch.Tensor, injection: torch.Tensor, rotary: Any) -> torch.Tensor:
        out: torch.Tensor = self.net(state, injection, rotary)
        self.calls.append(
            {
                "grad": torch.is_grad_enabled(),
                "state": state.detach(),
                "injection": injection.detach(),
                "out": out.detach(),
            }
        )
        return out


def spied_model(**overrides: Any) -> tuple[TinyRecursiveModel, NetSpy]:
    model = TinyRecursiveModel(tiny_config(**overrides))
    spy = NetSpy(model.net)
    model.net = spy  # type: ignore[assignment]
    return model, spy


def test_only_the_last_of_T_recursions_carries_gradients() -> None:
    model, spy = spied_model(T=3, n=2)
    out = model(torch.randint(1, 6, (2, 16)))
    per_recursion = 2 + 1  # n z-updates and one y-update
    assert len(spy.calls) == 3 * per_recursion
    assert [c["grad"] for c in spy.calls] == [False] * 6 + [True] * 3
    (out.logits.sum() + out.q_halt_logits.sum()).backward()
    # The no-grad passes cut the graph: the initial y/z get nothing through them...
    assert model.y_init.grad is None and model.z_init.grad is None
    assert model.embed_tokens.weight.grad is not None  # ...while x, injected last, does.


def test_without_recursion_gradients_reach_the_learned_initial_state() -> None:
    model, spy = spied_model(T=1, n=1)
    out = model(torch.randint(1, 6, (2, 16)))
    assert [c["grad"] for c in spy.calls] == [True, True]
    out.logits.sum().backward()
    assert model.y_init.grad is not None and model.y_init.grad.abs().sum() > 0
    assert model.z_init.grad is not None and model.z_init.grad.abs().sum() > 0


def test_x_is_injected_into_z_updates_only() -> None:
    model, spy = spied_model(T=2, n=3)
    inputs = torch.randint(1, 6, (2, 16))
    x = model.embed(inputs).detach()
    model(inputs)
    y = model.initial_carry(2).y.detach()
    for recursion in range(2):
        calls = spy.calls[recursion * 4 : (recursion + 1) * 4]
        for z_update in calls[:3]:  # z = net(z, y + x)
            assert torch.allclose(z_update["injection"], y + x, atol=1e-5)
        y_update = calls[3]  # y = net(y, z): no x
        assert torch.allclose(y_update["injection"], calls[2]["out"])
        assert torch.allclose(y_update["state"], y)
        y = y_update["out"]


def test_without_carry_every_supervision_step_answers_as_the_first() -> None:
    torch.manual_seed(0)
    model = TinyRecursiveModel(tiny_config(T=1, n=1, carry=False)).eval()
    inputs = torch.randint(1, 6, (3, 16))
    with torch.no_grad():
        first = model(inputs)
        later = first
        for _ in range(model.config.n_sup - 1):
            later = model(inputs, later.carry)
        # The same weights carrying y, z: a later step sees the first step's state.
        carried = TinyRecursiveModel(tiny_config(T=1, n=1)).eval()
        carried.load_state_dict(model.state_dict())
        carried_second = carried(inputs, carried(inputs).carry)
    torch.testing.assert_close(later.logits, first.logits)
    torch.testing.assert_close(later.q_halt_logits, first.q_halt_logits)
    torch.testing.assert_close(later.carry.y, first.carry.y)
    assert not torch.allclose(carried_second.logits, first.logits, atol=1e-4)
    one, _, halt_one = model.predict(inputs, steps=1)
    every, used, halt_every = model.predict(inputs)
    assert used.tolist() == [model.config.n_sup] * 3
    assert torch.equal(one, every)
    torch.testing.assert_close(halt_one, halt_every)


def test_halting_head_starts_closed_and_predict_stops_when_it_opens() -> None:
    model = TinyRecursiveModel(tiny_config(n_sup=5)).eval()
    inputs = torch.randint(1, 6, (3, 16))
    _, steps, confidence = model.predict(inputs, halt_early=True)
    assert steps.tolist() == [5, 5, 5]  # bias -5: never halts early
    assert torch.all(confidence < 0.01)
    with torch.no_grad():
        model.q_head.bias.fill_(5.0)
    _, steps, confidence = model.predict(inputs, halt_early=True)
    assert steps.tolist() == [1, 1, 1]
    assert torch.all(confidence > 0.99)
    _, steps, _ = model.predict(inputs, halt_early=False)
    assert steps.tolist() == [5, 5, 5]  # evaluation mode of the paper: always N_sup


def test_training_halting_rule_respects_last_step_and_exploration() -> None:
    config = tiny_config(n_sup=4, halt_exploration_prob=0.0)
    q = torch.tensor([-1.0, 1.0, -1.0])
    steps = torch.tensor([1, 1, 4])
    assert _halting(q, steps, config).tolist() == [False, True, True]
    always_explore = tiny_config(n_sup=4, halt_exploration_prob=1.0)
    # With exploration a random minimum in [2, n_sup] blocks halting at step 1.
    assert _halting(torch.tensor([5.0]), torch.tensor([1]), always_explore).tolist() == [False]
    assert _halting(torch.tensor([-5.0]), torch.tensor([4]), always_explore).tolist() == [True]


def test_act_loss_targets_whole_answer_correctness() -> None:
    labels = torch.tensor([[2, 3, 4, IGNORE_LABEL], [2, 3, 4, 5]])
    logits = torch.full((2, 4, 6), -4.0)
    for row in range(2):
        for col in range(4):
            logits[row, col, 2 + col] = 4.0
    logits[1, 3] = 0.0
    logits[1, 3, 2] = 4.0  # wrong last cell in sample 1
    result = act_loss(logits, torch.tensor([3.0, 3.0]), labels)
    assert result.exact_accuracy == 0.5
    assert result.q_accuracy == 0.5  # q says "halt" for both, only sample 0 is right
    assert result.cell_accuracy == pytest.approx(6 / 7)


def test_stablemax_cross_entropy_matches_its_definition() -> None:
    logits = torch.tensor([[[1.0, -1.0, 0.0]]])
    s = torch.tensor([2.0, 0.5, 1.0])
    expected = -torch.log(s[0] / s.sum())
    got = stablemax_cross_entropy(logits, torch.tensor([[0]]))
    assert got.item() == pytest.approx(expected.item())
    assert stablemax_cross_entropy(logits, torch.tensor([[IGNORE_LABEL]])).item() == 0.0


def test_weight_ema_follows_the_update_rule() -> None:
    layer = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    ema = WeightEma(layer, decay=0.9)
    with torch.no_grad():
        layer.weight.fill_(3.0)
    ema.update(layer)
    assert torch.allclose(ema.shadow["weight"], torch.full((1, 2), 1.2))
    ema.copy_to(layer)
    assert torch.allclose(layer.weight, torch.full((1, 2), 1.2))
