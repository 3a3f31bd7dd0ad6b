"""Flamingo building blocks: a Perceiver resampler and tanh-gated cross-attention.

Written after the open_flamingo helpers (MIT) that OpenTSLM-Flamingo uses: the resampler
turns any number of patch tokens into a fixed number of latents, and each gated block lets
text tokens attend to the latents of every series that precedes them (or, with
``only_attend_immediate_media``, only the most recent one, open_flamingo's default). Gates
start at 0, so at initialisation the language model's output is exactly unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FlamingoConfig:
    """Resampler and cross-attention sizes (paper: depth 6, 8 heads, dim_head 64, 64 latents)."""

    depth: int = 2
    num_heads: int = 4
    dim_head: int = 16
    num_latents: int = 8
    ff_mult: int = 2
    cross_attn_every_n_layers: int = 1
    # False: a text token sees all series before it, so the answer after a multi-series
    # input (HAR: x, y, z) sees every axis. True: only the latest series (open_flamingo).
    only_attend_immediate_media: bool = False

    def to_dict(self) -> dict[str, int | bool]:
        """JSON-ready form for checkpoint configs."""
        return asdict(self)


def _feed_forward(dim: int, mult: int) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, dim * mult, bias=False),
        nn.GELU(),
        nn.Linear(dim * mult, dim, bias=False),
    )


class PerceiverAttention(nn.Module):
    """Latents attend to [media; latents] (keys padded media patches out)."""

    def __init__(self, dim: int, dim_head: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = dim_head**-0.5
        inner = dim_head * heads
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(
        self, media: torch.Tensor, latents: torch.Tensor, media_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """media [N, M, d], latents [N, K, d], media_mask [N, M] True = real -> [N, K, d]."""
        media = self.norm_media(media)
        latents = self.norm_latents(latents)
        keys_in = torch.cat([media, latents], dim=1)
        q = _split_heads(self.to_q(latents), self.heads)
        k, v = (_split_heads(t, self.heads) for t in self.to_kv(keys_in).chunk(2, dim=-1))
        scores = torch.einsum("bhqd,bhkd->bhqk", q * self.scale, k)
        if media_mask is not None:
            keep = torch.cat([media_mask, media_mask.new_ones(latents.shape[:2])], dim=1)
            scores = scores.masked_fill(~keep[:, None, None, :], torch.finfo(scores.dtype).min)
        attended = torch.einsum("bhqk,bhkd->bhqd", scores.softmax(dim=-1), v)
        out: torch.Tensor = self.to_out(_merge_heads(attended))
        return out


class PerceiverResampler(nn.Module):
    """Map [N, M, d] patch tokens (any M) to [N, num_latents, d]."""

    def __init__(self, dim: int, config: FlamingoConfig) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.randn(config.num_latents, dim) * 0.02)
        self.attentions = nn.ModuleList(
            PerceiverAttention(dim, config.dim_head, config.num_heads) for _ in range(config.depth)
        )
        self.feed_forwards = nn.ModuleList(
            _feed_forward(dim, config.ff_mult) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, media: torch.Tensor, media_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Resample media tokens into a fixed number of latents per series."""
        latents = self.latents.unsqueeze(0).expand(media.shape[0], -1, -1)
        for attention, feed_forward in zip(self.attentions, self.feed_forwards, strict=True):
            latents = attention(media, latents, media_mask) + latents
            latents = feed_forward(latents) + latents
        normed: torch.Tensor = self.norm(latents)
        return normed


class GatedCrossAttentionBlock(nn.Module):
    """x + tanh(a) * xattn(x, media) then x + tanh(b) * ff(x); a = b = 0 at init."""

    def __init__(self, dim: int, media_dim: int, config: FlamingoConfig) -> None:
        super().__init__()
        inner = config.dim_head * config.num_heads
        self.heads = config.num_heads
        self.scale = config.dim_head**-0.5
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(media_dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)
        self.only_immediate = config.only_attend_immediate_media
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.feed_forward = _feed_forward(dim, config.ff_mult)
        self.ff_gate = nn.Parameter(torch.zeros(1))

    def forward(
        self, x: torch.Tensor, media: torch.Tensor, media_index: torch.Tensor
    ) -> torch.Tensor:
        """x [B, T, dim]; media [B, S, K, media_dim] latents per series; media_index [B, T].

        media_index[b, t] is the 1-based index of the series a text token follows (0 = none);
        a token sees the latents of series 1..media_index (only series media_index when
        ``only_attend_immediate_media``), and tokens before any series see nothing.
        """
        batch, series_count, latents_per_series, _ = media.shape
        q = _split_heads(self.to_q(self.norm(x)), self.heads)
        flat_media = media.reshape(batch, series_count * latents_per_series, -1)
        k, v = (_split_heads(t, self.heads) for t in self.to_kv(flat_media).chunk(2, dim=-1))
        scores = torch.einsum("bhqd,bhkd->bhqk", q * self.scale, k)
        owner = torch.arange(1, series_count + 1, device=x.device).repeat_interleave(
            latents_per_series
        )
        position = media_index.unsqueeze(-1)
        owners = owner.view(1, 1, -1)
        allowed = (position == owners) if self.only_immediate else (owners <= position)
        # Zero-padded series slots (fewer series than the batch's widest sample) lie above
        # media_index for every token of that sample, so they stay masked either way.
        scores = scores.masked_fill(~allowed[:, None], torch.finfo(scores.dtype).min)
        attended = torch.einsum("bhqk,bhkd->bhqd", scores.softmax(dim=-1), v)
        # Rows with no allowed key got a uniform softmax over masked keys: zero them out.
        attended = attended * (media_index > 0)[:, None, :, None].to(attended.dtype)
        x = x + self.attn_gate.tanh() * self.to_out(_merge_heads(attended))
        out: torch.Tensor = x + self.ff_gate.tanh() * self.feed_forward(x)
        return out


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    batch, length, inner = t.shape
    return t.view(batch, length, heads, inner // heads).transpose(1, 2)


def _merge_heads(t: torch.Tensor) -> torch.Tensor:
    batch, heads, length, dim_head = t.shape
    return t.transpose(1, 2).reshape(batch, length, heads * dim_head)
