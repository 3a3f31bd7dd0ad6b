"""Deep-supervision training of TRM with ACT halting, EMA, checkpoints and resume.

Like the paper's code, a batch is a set of slots: each slot holds one puzzle
and its carry across supervision steps; a slot whose puzzle halted (halting
head says so, or ``n_sup`` steps ran) gets a fresh augmented puzzle. Every
supervision step is one optimizer step over the whole batch.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from coral_sdk.models.trm import checkpoint as ckpt
from coral_sdk.models.trm.config import TrainConfig, TrmConfig
from coral_sdk.models.trm.data import cached_sets, difficulty_of
from coral_sdk.models.trm.ema import WeightEma
from coral_sdk.models.trm.evaluation import exact_accuracy
from coral_sdk.models.trm.losses import act_loss
from coral_sdk.models.trm.model import Carry, TinyRecursiveModel
from coral_sdk.models.trm.tasks import Grids, PuzzleTask, get_task
from coral_sdk.runtime.device import autocast_for
from coral_sdk.runtime.weights import load_weights


@dataclass
class TrainResult:
    """Where the run ended: checkpoint, step, wall time, final held-out exact accuracy."""

    checkpoint: Path
    step: int
    elapsed_s: float
    heldout_accuracy: float
    last_loss: float


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier: linear warmup, then cosine decay to ``min_ratio`` (1.0 = constant)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class _Slots:
    """The streaming batch: per-slot puzzle, labels, carry and step count."""

    def __init__(self, model: TinyRecursiveModel, batch: int, seq_len: int, device: torch.device):
        self.inputs = torch.zeros(batch, seq_len, dtype=torch.long, device=device)
        self.labels = torch.zeros(batch, seq_len, dtype=torch.long, device=device)
        self.steps = torch.zeros(batch, dtype=torch.long, device=device)
        self.halted = torch.ones(batch, dtype=torch.bool, device=device)
        self.carry: Carry = model.initial_carry(batch)

    def refill(
        self,
        model: TinyRecursiveModel,
        task: PuzzleTask,
        train: tuple[Grids, Grids],
        config: TrainConfig,
        rng: np.random.Generator,
    ) -> None:
        """Give halted slots new (augmented) puzzles and the learned initial carry."""
        fresh = self.halted.nonzero().squeeze(-1)
        if fresh.numel() == 0:
            return
        picks = rng.integers(len(train[0]), size=fresh.numel())
        puzzles, solutions = train[0][picks], train[1][picks]
        if config.augment:
            puzzles, solutions = task.augment(puzzles, solutions, rng)
        device = self.inputs.device
        self.inputs[fresh] = torch.from_numpy(task.encode(puzzles)).to(device)
        self.labels[fresh] = torch.from_numpy(task.encode(solutions)).to(device)
        self.steps[fresh] = 0
        self.carry = self.carry.select(~self.halted, model.initial_carry(len(self.halted)))


def _halting(q_halt: torch.Tensor, steps: torch.Tensor, config: TrmConfig) -> torch.Tensor:
    """Slots that stop now: last step, or halt logit > 0 past a random minimum (exploration)."""
    halted = (steps >= config.n_sup) | (q_halt > 0)
    if config.n_sup >= 2 and config.halt_exploration_prob > 0:
        explore = torch.rand_like(q_halt.float()) < config.halt_exploration_prob
        min_steps = explore * torch.randint_like(steps, low=2, high=config.n_sup + 1)
        halted = halted & (steps >= min_steps)
    return halted


def _evaluate(
    model: TinyRecursiveModel, ema: WeightEma | None, task: PuzzleTask, heldout: tuple[Grids, Grids]
) -> float:
    scored = copy.deepcopy(model)
    if ema is not None:
        ema.copy_to(scored)
    return exact_accuracy(scored.eval(), task, heldout[0], heldout[1])


def train_trm(
    model_config: TrmConfig,
    train_config: TrainConfig,
    out_dir: str | Path,
    *,
    device: torch.device,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    time_limit_s: float | None = None,
) -> TrainResult:
    """Train (or resume) a TRM on ``train_config.task``; checkpoint to ``out_dir``.

    Evaluates exact accuracy on the fixed held-out set at every checkpoint.
    With ``time_limit_s`` the run stops after that much wall time in this
    call, saving a checkpoint at the step it reached (``--resume`` goes on).
    """
    out = Path(out_dir)
    task = get_task(train_config.task)
    if (model_config.vocab_size, model_config.seq_len) != (task.vocab_size, task.seq_len):
        raise ValueError(f"model vocab/seq_len do not match task {task.name}")
    difficulty = difficulty_of(train_config)
    train, heldout = cached_sets(
        train_config.data_cache,
        task,
        difficulty,
        train_config.train_size,
        train_config.seed,
        train_config.eval_size,
        log,
    )
    if train_config.monitor_size is not None:
        heldout = (heldout[0][: train_config.monitor_size], heldout[1][: train_config.monitor_size])

    torch.manual_seed(train_config.seed)
    model = TinyRecursiveModel(model_config).to(device).train()
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=train_config.lr,
        betas=(train_config.beta1, train_config.beta2),
        weight_decay=train_config.weight_decay,
    )
    ema = WeightEma(model, train_config.ema_decay) if train_config.ema else None
    rng = np.random.default_rng(train_config.seed)
    state = ckpt.TrainState()
    if resume and (out / ckpt.STATE_FILE).is_file():
        state = ckpt.read_state(out)
        model.load_state_dict(load_weights(out / ckpt.MODEL_FILE, device))
        ckpt.load_optimizer_state(out, optimizer, state)
        saved_ema = ckpt.read_ema(out)
        if ema is not None and saved_ema is not None:
            ema.load_state_dict(saved_ema)
        if state.numpy_rng:
            rng.bit_generator.state = state.numpy_rng
        log(f"resuming {out} at step {state.step}")

    def lr_at(step: int) -> float:
        return warmup_cosine(
            step, train_config.lr_warmup_steps, train_config.steps, train_config.lr_min_ratio
        )

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    # LambdaLR starts at its own step 0; jump it to where the run stands.
    for group in optimizer.param_groups:
        group["lr"] = train_config.lr * lr_at(state.step)
    scheduler.last_epoch = state.step

    slots = _Slots(model, train_config.batch_size, task.seq_len, device)
    started = time.perf_counter() - state.elapsed_s
    accuracy, loss_value = math.nan, math.nan
    window_loss, window_exact, window_steps = 0.0, 0.0, 0
    bar = tqdm(
        total=train_config.steps, initial=state.step, disable=not progress, desc=f"trm {task.name}"
    )
    call_started = time.perf_counter()
    while state.step < train_config.steps:
        slots.refill(model, task, train, train_config, rng)
        with autocast_for(device):
            output = model(slots.inputs, slots.carry)
        loss = act_loss(
            output.logits,
            output.q_halt_logits,
            slots.labels,
            loss_type=model_config.loss,
            q_weight=model_config.q_loss_weight,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()  # type: ignore[no-untyped-call]
        if train_config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update(model)
        with torch.no_grad():
            slots.carry = output.carry
            slots.steps += 1
            slots.halted = _halting(output.q_halt_logits.detach(), slots.steps, model_config)
        state.step += 1
        loss_value = float(loss.total.detach())
        window_loss += loss_value
        window_exact += loss.exact_accuracy
        window_steps += 1
        bar.update(1)
        bar.set_postfix(
            loss=f"{loss_value:.3f}",
            cell=f"{loss.cell_accuracy:.3f}",
            exact=f"{loss.exact_accuracy:.3f}",
            q=f"{loss.q_accuracy:.2f}",
        )
        out_of_time = (
            time_limit_s is not None and time.perf_counter() - call_started >= time_limit_s
        )
        if (
            state.step % train_config.checkpoint_every == 0
            or state.step == train_config.steps
            or out_of_time
        ):
            accuracy = _evaluate(model, ema, task, heldout)
            state.elapsed_s = time.perf_counter() - started
            state.numpy_rng = dict(rng.bit_generator.state)
            state.history.append(
                {
                    "step": float(state.step),
                    "elapsed_s": round(state.elapsed_s, 1),
                    # means over the steps since the previous checkpoint
                    "loss": round(window_loss / window_steps, 4),
                    "train_exact": round(window_exact / window_steps, 4),
                    "heldout_exact": round(accuracy, 4),
                }
            )
            window_loss, window_exact, window_steps = 0.0, 0.0, 0
            ckpt.save_checkpoint(
                out,
                model,
                train_config,
                state,
                ema=ema.state_dict() if ema is not None else None,
                optimizer=optimizer,
            )
            bar.write(f"step {state.step}: held-out exact accuracy {accuracy:.3f} -> saved {out}")
        if out_of_time:
            bar.write(f"time limit reached at step {state.step}; --resume continues")
            break
    bar.close()
    if math.isnan(accuracy):
        accuracy = _evaluate(model, ema, task, heldout)
    return TrainResult(out, state.step, time.perf_counter() - started, accuracy, loss_value)
