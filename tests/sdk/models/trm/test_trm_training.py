"""Training: loss goes down, checkpoints round-trip, resume continues, CLI trains and evaluates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from coral_sdk.cli import main as coral_agent
from coral_sdk.models.trm import checkpoint as ckpt
from coral_sdk.models.trm.config import TrainConfig, TrmConfig
from coral_sdk.models.trm.training import train_trm, warmup_cosine


def small_configs(steps: int, **train: object) -> tuple[TrmConfig, TrainConfig]:
    model = TrmConfig(
        vocab_size=6,
        seq_len=16,
        hidden_size=32,
        num_heads=4,
        T=2,
        n=2,
        n_sup=3,
        mixer="mlp",
        pos_encodings="none",
        puzzle_emb_len=1,
    )
    values: dict[str, object] = {
        "task": "sudoku4",
        "steps": steps,
        "batch_size": 32,
        "lr": 3e-3,
        "lr_warmup_steps": 5,
        "weight_decay": 0.1,
        "ema_decay": 0.9,
        "train_size": 200,
        "eval_size": 32,
        "checkpoint_every": 20,
    }
    values.update(train)
    return model, TrainConfig.model_validate(values)


def test_short_training_run_reduces_loss(tmp_path: Path) -> None:
    model_config, train_config = small_configs(80)
    result = train_trm(
        model_config, train_config, tmp_path / "run", device=torch.device("cpu"), progress=False
    )
    history = ckpt.read_state(result.checkpoint).history
    assert [h["step"] for h in history] == [20, 40, 60, 80]
    losses = [h["loss"] for h in history]
    assert losses[-1] < 0.9 * losses[0]
    assert losses[-1] == min(losses)
    assert history[-1]["train_exact"] >= history[0]["train_exact"]


def test_checkpoint_round_trips_and_training_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    model_config, first = small_configs(20)
    train_trm(model_config, first, out, device=torch.device("cpu"), progress=False)
    for name in (ckpt.MODEL_FILE, ckpt.EMA_FILE, ckpt.OPTIMIZER_FILE, ckpt.CONFIG_FILE):
        assert (out / name).is_file()
    loaded, config = ckpt.load_model(out)
    assert config.model == model_config and config.train == first
    raw, _ = ckpt.load_model(out, use_ema=False)
    ema = ckpt.read_ema(out)
    assert ema is not None
    assert torch.equal(loaded.lm_head.weight, ema["lm_head.weight"])
    assert not torch.equal(loaded.lm_head.weight, raw.lm_head.weight)

    _, second = small_configs(40)
    result = train_trm(
        model_config, second, out, device=torch.device("cpu"), resume=True, progress=False
    )
    state = ckpt.read_state(out)
    assert result.step == 40 and state.step == 40
    assert [h["step"] for h in state.history] == [20, 40]
    assert state.optimizer_groups[0]["lr"] == pytest.approx(3e-3)


def test_resume_without_optimizer_state_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    model_config, config = small_configs(20)
    train_trm(model_config, config, out, device=torch.device("cpu"), progress=False)
    (out / ckpt.OPTIMIZER_FILE).unlink()
    _, longer = small_configs(40)
    with pytest.raises(ckpt.CheckpointError):
        train_trm(
            model_config, longer, out, device=torch.device("cpu"), resume=True, progress=False
        )


def test_loading_a_directory_that_is_not_a_checkpoint_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ckpt.CheckpointError, match="not a TRM checkpoint"):
        ckpt.load_model(tmp_path)


def test_learning_rate_schedule_warms_up_then_decays() -> None:
    assert warmup_cosine(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(100, 10, 100, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(50, 10, 100, 1.0) == pytest.approx(1.0)


def test_cli_trains_with_ablation_and_evaluates_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    args = ["train", "trm", "--task", "sudoku4", "--steps", "6", "--batch-size", "8"]
    args += ["--hidden", "16", "--heads", "2", "--n-sup", "2", "--train-size", "20"]
    args += ["--eval-size", "8", "--checkpoint-every", "3", "--threads", "1", "--quiet"]
    assert coral_agent([*args, "--out", str(out), "--ablation"]) == 0
    flat = ckpt.read_config(tmp_path / "cli-norec").model
    assert (flat.T, flat.n) == (1, 1)
    assert ckpt.read_config(out).model.hidden_size == 16
    capsys.readouterr()
    assert coral_agent(["eval", "trm", "--checkpoint", str(out), "--threads", "1"]) == 0
    report = capsys.readouterr().out
    assert "exact accuracy on 8 held-out puzzles" in report
    assert "same weights without recursion" in report
    assert "trained without recursion (T=1, n=1)" in report


def test_no_carry_is_recorded_and_honoured_by_eval_and_the_served_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from coral_sdk.models.trm.data import heldout_set
    from coral_sdk.models.trm.evaluation import predict_grids
    from coral_sdk.models.trm.solver import TrmSolver
    from coral_sdk.models.trm.tasks import Difficulty, get_task

    out = tmp_path / "nocarry"
    args = ["train", "trm", "--task", "sudoku4", "--steps", "6", "--batch-size", "8"]
    args += ["--hidden", "16", "--heads", "2", "--n-sup", "3", "--train-size", "20", "--T", "1"]
    args += ["--n", "1", "--eval-size", "8", "--checkpoint-every", "3", "--threads", "1"]
    assert coral_agent([*args, "--quiet", "--no-carry", "--out", str(out)]) == 0
    assert ckpt.read_config(out).model.carry is False
    model, _ = ckpt.load_model(out)
    assert model.config.carry is False
    task = get_task("sudoku4")
    puzzles, _ = heldout_set(task, Difficulty(givens_min=4, givens_max=8), 16)
    one, _, halt_one = predict_grids(model, task, puzzles, steps=1)
    every, _, halt_every = predict_grids(model, task, puzzles, steps=3)
    assert np.array_equal(one, every) and np.allclose(halt_one, halt_every)
    # Served: further steps would repeat the first answer, so it answers after one.
    solver = TrmSolver.from_checkpoint(out, device="cpu")
    served = solver.solve_batch([{"task": "sudoku4", "grid": p.tolist()} for p in puzzles])
    for puzzle, first, response in zip(puzzles, one, served, strict=True):
        assert np.array_equal(np.where(puzzle > 0, puzzle, first), response["solution"])
        assert response["supervision_steps"] == 1
    capsys.readouterr()
    assert coral_agent(["eval", "trm", "--checkpoint", str(out), "--threads", "1"]) == 0
    assert "exact accuracy on 8 held-out puzzles" in capsys.readouterr().out


def test_time_limit_stops_with_a_checkpoint_that_resumes(tmp_path: Path) -> None:
    out = tmp_path / "timed"
    model_config, config = small_configs(10_000)
    result = train_trm(
        model_config, config, out, device=torch.device("cpu"), progress=False, time_limit_s=0.0
    )
    # A zero budget still runs (and checkpoints) exactly one step.
    assert result.step == 1 and ckpt.read_state(out).step == 1
    again = train_trm(
        model_config,
        config.model_copy(update={"steps": 3}),
        out,
        device=torch.device("cpu"),
        resume=True,
        progress=False,
    )
    assert again.step == 3


def test_presets_pick_their_task_and_the_paper_recipe() -> None:
    import argparse

    from coral_sdk.models.trm.cli import add_train_args, configs_from_args

    parser = argparse.ArgumentParser()
    add_train_args(parser)
    model, train = configs_from_args(parser.parse_args(["--preset", "sudoku9-paper"]))
    assert train.task == "sudoku9" and train.minimal and train.ema_decay == 0.999
    assert (model.hidden_size, model.T, model.n, model.n_sup, model.mixer) == (
        512,
        3,
        6,
        16,
        "mlp",
    )
    assert model.seq_len == 81 and model.vocab_size == 11
    model6, train6 = configs_from_args(parser.parse_args(["--preset", "sudoku6", "--T", "1"]))
    assert train6.task == "sudoku6" and train6.minimal and model6.T == 1


def test_gpu_check_script_runs_tiny_on_cpu(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[4]
    proc = subprocess.run(
        [
            sys.executable,
            str(root / "scripts" / "trm_gpu_check.py"),
            "--tiny",
            "--device",
            "cpu",
            "--minutes",
            "0.02",
            "--train-size",
            "8",
            "--eval-size",
            "4",
            "--out",
            str(tmp_path / "check"),
            "--data-cache",
            str(tmp_path / "data"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["steps"] >= 1 and summary["resumed_to_step"] == summary["steps"] + 3
    assert summary["generator_9x9_minimal_puzzles_per_s_per_core"] > 0
    assert summary["steps_per_s"] > 0
