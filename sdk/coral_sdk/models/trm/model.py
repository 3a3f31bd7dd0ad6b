"""The Tiny Recursive Model: latent recursion, deep recursion and one supervision step.

Naming follows the paper: ``y`` is the current answer embedding (the reference
code's z_H) and ``z`` the latent reasoning state (z_L). One tiny network does
both updates; only the z-update sees the input ``x``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from coral_sdk.models.trm.config import TrmConfig
from coral_sdk.models.trm.layers import RotaryTables, TinyNetwork, lecun_linear, rotary_tables


@dataclass
class Carry:
    """State passed between supervision steps: answer ``y`` and latent ``z``, (B, L, D)."""

    y: torch.Tensor
    z: torch.Tensor

    def detach(self) -> Carry:
        """The same state cut from the autograd graph (deep supervision's carry)."""
        return Carry(self.y.detach(), self.z.detach())

    def select(self, keep: torch.Tensor, other: Carry) -> Carry:
        """Per sample: this carry where ``keep`` (B,) is true, else ``other``'s."""
        mask = keep.view(-1, 1, 1)
        return Carry(torch.where(mask, self.y, other.y), torch.where(mask, self.z, other.z))


@dataclass
class StepOutput:
    """What one supervision step produces: new carry (detached), logits, halting logit."""

    carry: Carry
    logits: torch.Tensor  # (B, seq_len, vocab)
    q_halt_logits: torch.Tensor  # (B,)


class TinyRecursiveModel(nn.Module):
    """TRM: embeddings, the shared tiny network, output head and halting (Q) head."""

    def __init__(self, config: TrmConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.hidden_size
        self.embed_scale = math.sqrt(dim)
        self.embed_tokens = nn.Embedding(config.vocab_size, dim)
        nn.init.trunc_normal_(self.embed_tokens.weight, std=1.0 / self.embed_scale)
        # Per-puzzle learned prefix tokens, zero-initialised as in the paper.
        self.puzzle_emb = nn.Embedding(config.num_puzzle_identifiers, config.puzzle_emb_len * dim)
        nn.init.zeros_(self.puzzle_emb.weight)
        self.pos_emb: nn.Embedding | None = None
        if config.pos_encodings == "learned":
            self.pos_emb = nn.Embedding(config.total_len, dim)
            nn.init.trunc_normal_(self.pos_emb.weight, std=1.0 / self.embed_scale)
        self.rotary: RotaryTables | None = None
        if config.pos_encodings == "rope":
            cos, sin = rotary_tables(config.total_len, dim // config.num_heads, config.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.net = TinyNetwork(config)
        self.lm_head = lecun_linear(dim, config.vocab_size)
        # Only the halting logit: the paper drops HRM's Q-continue head (no_ACT_continue).
        self.q_head = nn.Linear(dim, 1)
        nn.init.zeros_(self.q_head.weight)
        nn.init.constant_(self.q_head.bias, -5.0)  # start by never halting
        self.y_init = nn.Parameter(nn.init.trunc_normal_(torch.empty(dim), std=1.0))
        self.z_init = nn.Parameter(nn.init.trunc_normal_(torch.empty(dim), std=1.0))

    def _rotary(self) -> RotaryTables | None:
        if self.config.pos_encodings != "rope":
            return None
        return self.get_buffer("rope_cos"), self.get_buffer("rope_sin")

    def embed(self, inputs: torch.Tensor, puzzle_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Input embedding ``x``: puzzle prefix tokens then cell tokens, scaled by sqrt(D)."""
        batch = inputs.shape[0]
        if puzzle_ids is None:
            puzzle_ids = torch.zeros(batch, dtype=torch.long, device=inputs.device)
        prefix = self.puzzle_emb(puzzle_ids).view(batch, self.config.puzzle_emb_len, -1)
        cells = self.embed_tokens(inputs)
        x = torch.cat([prefix.to(cells.dtype), cells], dim=1)
        if self.pos_emb is not None:
            # 1/sqrt(2) keeps the variance of the sum at that of one embedding.
            x = 0.707106781 * (x + self.pos_emb.weight.to(x.dtype))
        return self.embed_scale * x

    def initial_carry(self, batch_size: int) -> Carry:
        """The learned initial answer and latent, broadcast to every position."""
        shape = (batch_size, self.config.total_len, self.config.hidden_size)
        return Carry(self.y_init.expand(shape), self.z_init.expand(shape))

    def latent_recursion(self, x: torch.Tensor, carry: Carry) -> Carry:
        """Update ``z`` n times from (x, y, z), then ``y`` once from (y, z) without x."""
        rotary = self._rotary()
        y, z = carry.y, carry.z
        for _ in range(self.config.n):
            z = self.net(z, y + x, rotary)
        y = self.net(y, z, rotary)
        return Carry(y, z)

    def deep_recursion(self, x: torch.Tensor, carry: Carry) -> StepOutput:
        """T latent recursions: T-1 without gradients, the last one backpropagated.

        Without ``config.carry`` the given carry is ignored and every step starts
        from the learned initial ``y``, ``z``: each step then answers from one
        application of the recursion, whatever steps came before.
        """
        if not self.config.carry:
            carry = self.initial_carry(x.shape[0])
        with torch.no_grad():
            for _ in range(self.config.T - 1):
                carry = self.latent_recursion(x, carry)
        carry = self.latent_recursion(x, carry)
        logits = self.lm_head(carry.y)[:, self.config.puzzle_emb_len :]
        q_halt = self.q_head(carry.y[:, 0]).squeeze(-1)
        return StepOutput(carry.detach(), logits, q_halt)

    def forward(
        self,
        inputs: torch.Tensor,
        carry: Carry | None = None,
        puzzle_ids: torch.Tensor | None = None,
    ) -> StepOutput:
        """One supervision step on token ``inputs`` (B, seq_len) from ``carry`` (or the init)."""
        if carry is None:
            carry = self.initial_carry(inputs.shape[0])
        return self.deep_recursion(self.embed(inputs, puzzle_ids), carry)

    @torch.no_grad()
    def predict(
        self, inputs: torch.Tensor, *, steps: int | None = None, halt_early: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run up to ``steps`` (default n_sup) supervision steps; return tokens, steps, halt prob.

        Without ``halt_early`` every sample runs all steps (the paper's evaluation);
        with it, a sample's answer freezes at the first step whose halt logit is > 0.
        """
        steps = steps or self.config.n_sup
        batch = inputs.shape[0]
        x = self.embed(inputs)
        carry = self.initial_carry(batch)
        answer = torch.zeros(inputs.shape, dtype=torch.long, device=inputs.device)
        used = torch.zeros(batch, dtype=torch.long, device=inputs.device)
        confidence = torch.zeros(batch, dtype=torch.float32, device=inputs.device)
        done = torch.zeros(batch, dtype=torch.bool, device=inputs.device)
        for step in range(1, steps + 1):
            out = self.deep_recursion(x, carry)
            carry = out.carry
            live = ~done
            answer = torch.where(live.unsqueeze(-1), out.logits.argmax(-1), answer)
            confidence = torch.where(live, torch.sigmoid(out.q_halt_logits.float()), confidence)
            used = torch.where(live, torch.full_like(used, step), used)
            if halt_early:
                done = done | (out.q_halt_logits > 0)
                if bool(done.all()):
                    break
        return answer, used, confidence
