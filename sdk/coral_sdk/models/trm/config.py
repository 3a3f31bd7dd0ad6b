"""Typed TRM configuration; defaults are the paper's (Sudoku-Extreme, TRM-MLP/Att)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrmConfig(BaseModel):
    """Architecture and recursion schedule of one Tiny Recursive Model.

    ``T`` (H_cycles) full recursions per supervision step, each updating the
    latent ``z`` ``n`` (L_cycles) times then the answer ``y`` once; up to
    ``n_sup`` (halt_max_steps) supervision steps per puzzle.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    vocab_size: int = Field(gt=1)
    seq_len: int = Field(gt=0)
    hidden_size: int = Field(default=512, gt=0)
    num_heads: int = Field(default=8, gt=0)
    expansion: float = Field(default=4.0, gt=0)
    num_layers: int = Field(default=2, gt=0)
    T: int = Field(default=3, ge=1, description="H_cycles: deep recursions per supervision step")
    n: int = Field(default=6, ge=1, description="L_cycles: latent updates per recursion")
    n_sup: int = Field(default=16, ge=1, description="maximum deep-supervision steps")
    carry: bool = Field(
        default=True,
        description=(
            "carry y and z from one supervision step to the next (the paper); False starts "
            "every step from the learned initial y, z (the no-recursion-at-all ablation)"
        ),
    )
    mixer: Literal["attention", "mlp"] = "attention"
    pos_encodings: Literal["rope", "learned", "none"] = "rope"
    #: puzzle-embedding tokens prepended to the sequence; the halting head reads
    #: position 0, so at least one is kept even without puzzle identifiers.
    puzzle_emb_len: int = Field(default=16, ge=1)
    num_puzzle_identifiers: int = Field(default=1, ge=1)
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    halt_exploration_prob: float = Field(default=0.1, ge=0.0, le=1.0)
    loss: Literal["stablemax", "softmax"] = "stablemax"
    q_loss_weight: float = 0.5

    @model_validator(mode="after")
    def _check_heads(self) -> TrmConfig:
        if self.mixer == "attention" and self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be divisible by num_heads")
        if self.pos_encodings == "rope" and (self.hidden_size // self.num_heads) % 2:
            raise ValueError("rope needs an even head dimension")
        return self

    @property
    def total_len(self) -> int:
        """Sequence length the network sees: puzzle-embedding tokens plus cells."""
        return self.puzzle_emb_len + self.seq_len

    @property
    def effective_depth(self) -> int:
        """Layers traversed per supervision step: T * (n + 1) * num_layers (42 in the paper)."""
        return self.T * (self.n + 1) * self.num_layers


class TrainConfig(BaseModel):
    """Optimisation settings; defaults follow the paper's Sudoku recipe (AdamW for AdamATan2)."""

    model_config = ConfigDict(extra="forbid")

    task: str = "sudoku4"
    steps: int = Field(default=2000, gt=0, description="optimizer steps (one per supervision step)")
    batch_size: int = Field(default=768, gt=0)
    lr: float = 1e-4
    lr_warmup_steps: int = Field(default=2000, ge=0)
    lr_min_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    weight_decay: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.95
    ema: bool = True
    ema_decay: float = Field(default=0.999, ge=0.0, lt=1.0)
    train_size: int = Field(default=1000, gt=0, description="distinct training puzzles")
    augment: bool = True
    eval_size: int = Field(default=500, gt=0)
    monitor_size: int | None = Field(
        default=None, gt=0, description="held-out puzzles scored at each checkpoint (default all)"
    )
    givens_min: int = 4
    givens_max: int = 8
    minimal: bool = Field(default=False, description="Sudoku: minimal puzzles (ignores givens)")
    data_cache: str | None = Field(
        default=None, description="directory caching generated training/held-out sets"
    )
    maze_min_path: int = 0
    maze_wall_density: float = Field(default=0.3, ge=0.0, lt=1.0)
    seed: int = 0
    checkpoint_every: int = Field(default=500, gt=0)
    grad_clip: float | None = 1.0
