"""Building blocks of the tiny network: RMS norm, SwiGLU, attention, RoPE, mixer blocks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from coral_sdk.models.trm.config import TrmConfig

RotaryTables = tuple[torch.Tensor, torch.Tensor]


def rms_norm(hidden: torch.Tensor, eps: float) -> torch.Tensor:
    """Parameter-free RMS normalisation, computed in float32 for stability."""
    as_float = hidden.float()
    variance = as_float.pow(2).mean(-1, keepdim=True)
    return (as_float * torch.rsqrt(variance + eps)).to(hidden.dtype)


def lecun_linear(in_features: int, out_features: int, *, bias: bool = False) -> nn.Linear:
    """A linear layer with truncated-normal LeCun init (std 1/sqrt(fan_in)), as the paper's code."""
    layer = nn.Linear(in_features, out_features, bias=bias)
    nn.init.trunc_normal_(layer.weight, std=1.0 / math.sqrt(in_features))
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class SwiGLU(nn.Module):
    """Gated MLP ``down(silu(gate(x)) * up(x))`` with about ``expansion * dim`` parameters."""

    def __init__(self, dim: int, expansion: float) -> None:
        super().__init__()
        # 2/3 keeps the parameter count of a plain MLP with the same expansion.
        inner = -(-round(expansion * dim * 2 / 3) // 8) * 8
        self.gate_up = lecun_linear(dim, 2 * inner)
        self.down = lecun_linear(inner, dim)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Apply the MLP on the last axis."""
        gate, up = self.gate_up(hidden).chunk(2, dim=-1)
        out: torch.Tensor = self.down(F.silu(gate) * up)
        return out


def rotary_tables(length: int, head_dim: int, theta: float) -> RotaryTables:
    """cos/sin tables for rotary position embeddings, shape (length, head_dim)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rotary(x: torch.Tensor, tables: RotaryTables) -> torch.Tensor:
    """Rotate query/key features (B, heads, L, head_dim) by their positions."""
    cos, sin = (t.to(x.dtype) for t in tables)
    return x * cos + _rotate_half(x) * sin


class SelfAttention(nn.Module):
    """Non-causal multi-head self-attention: every cell sees every cell."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = lecun_linear(dim, 3 * dim)
        self.out = lecun_linear(dim, dim)

    def forward(self, hidden: torch.Tensor, rotary: RotaryTables | None) -> torch.Tensor:
        """Attend over the sequence axis of ``hidden`` (B, L, D)."""
        batch, length, dim = hidden.shape
        qkv = self.qkv(hidden).view(batch, length, 3, self.num_heads, dim // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if rotary is not None:
            query, key = apply_rotary(query, rotary), apply_rotary(key, rotary)
        attended = F.scaled_dot_product_attention(query, key, value, is_causal=False)
        out: torch.Tensor = self.out(attended.transpose(1, 2).reshape(batch, length, dim))
        return out


class RecursionBlock(nn.Module):
    """Post-norm block: token mixing (attention or MLP over positions), then channel SwiGLU."""

    def __init__(self, config: TrmConfig) -> None:
        super().__init__()
        self.eps = config.rms_norm_eps
        self.attention: SelfAttention | None = None
        self.token_mlp: SwiGLU | None = None
        if config.mixer == "attention":
            self.attention = SelfAttention(config.hidden_size, config.num_heads)
        else:
            # TRM-MLP: an MLP across the sequence axis (MLP-Mixer), best on Sudoku.
            self.token_mlp = SwiGLU(config.total_len, config.expansion)
        self.channel_mlp = SwiGLU(config.hidden_size, config.expansion)

    def forward(self, hidden: torch.Tensor, rotary: RotaryTables | None) -> torch.Tensor:
        """Mix tokens then channels, each with a residual and RMS norm."""
        if self.token_mlp is not None:
            mixed = self.token_mlp(hidden.transpose(1, 2)).transpose(1, 2)
        else:
            assert self.attention is not None
            mixed = self.attention(hidden, rotary)
        hidden = rms_norm(hidden + mixed, self.eps)
        return rms_norm(hidden + self.channel_mlp(hidden), self.eps)


class TinyNetwork(nn.Module):
    """The single shared 2-layer network: ``net(state, injection) = layers(state + injection)``."""

    def __init__(self, config: TrmConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(RecursionBlock(config) for _ in range(config.num_layers))

    def forward(
        self, state: torch.Tensor, injection: torch.Tensor, rotary: RotaryTables | None
    ) -> torch.Tensor:
        """Add the injection to the state and run every layer."""
        hidden = state + injection
        for layer in self.layers:
            hidden = layer(hidden, rotary)
        return hidden
