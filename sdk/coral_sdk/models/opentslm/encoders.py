"""Time-series encoders and the projector into the language model's embedding space.

Shapes follow OpenTSLM: a series of L samples (padded to a multiple of the patch size)
becomes L / patch_size tokens of width ``dim``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

PATCH_SIZE = 4
MAX_SERIES_LENGTH = 4096


@dataclass(frozen=True)
class EncoderConfig:
    """Encoder sizes (the paper uses dim 128, 8 heads, 6 layers, ff 1024; defaults are shrunk)."""

    dim: int = 64
    num_heads: int = 4
    num_layers: int = 2
    ff_dim: int = 128
    patch_size: int = PATCH_SIZE
    max_patches: int = MAX_SERIES_LENGTH // PATCH_SIZE

    def to_dict(self) -> dict[str, int]:
        """JSON-ready form for checkpoint configs."""
        return asdict(self)


def pad_series_batch(
    series: list[torch.Tensor], patch_size: int = PATCH_SIZE
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack 1-D series into [N, L] zero-padded to a patch multiple; return it with a patch mask.

    The mask is [N, L / patch_size], True where a patch holds real samples.
    """
    if not series:
        raise ValueError("no series to pad")
    lengths = [int(s.shape[0]) for s in series]
    longest = max(lengths)
    padded_length = -(-longest // patch_size) * patch_size
    batch = series[0].new_zeros((len(series), padded_length))
    mask = torch.zeros(
        (len(series), padded_length // patch_size), dtype=torch.bool, device=batch.device
    )
    for row, (values, length) in enumerate(zip(series, lengths, strict=True)):
        batch[row, :length] = values
        mask[row, : -(-length // patch_size)] = True
    return batch, mask


class CNNTokenizer(nn.Module):
    """Conv1d patch embedding + learned positions + LayerNorm: [N, L] -> [N, L/p, dim]."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = nn.Conv1d(
            1, config.dim, kernel_size=config.patch_size, stride=config.patch_size, bias=False
        )
        self.position = nn.Parameter(torch.randn(1, config.max_patches, config.dim) * 0.02)
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, series: torch.Tensor) -> torch.Tensor:
        """Embed a [N, L] batch (L a multiple of the patch size) into patch tokens."""
        patches = self.patch_embed(series.unsqueeze(1)).transpose(1, 2)
        count = patches.shape[1]
        if count > self.config.max_patches:
            raise ValueError(f"series has {count} patches, more than {self.config.max_patches}")
        normed: torch.Tensor = self.norm(patches + self.position[:, :count])
        return normed


class TransformerCNNEncoder(nn.Module):
    """CNNTokenizer followed by a transformer encoder over the patches (SoftPrompt's encoder)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.tokenizer = CNNTokenizer(config)
        layer = nn.TransformerEncoderLayer(
            d_model=config.dim,
            nhead=config.num_heads,
            dim_feedforward=config.ff_dim,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=config.num_layers)

    def forward(self, series: torch.Tensor, patch_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode [N, L] into [N, L/p, dim]; padded patches (mask False) are not attended to."""
        tokens = self.tokenizer(series)
        padding = None if patch_mask is None else ~patch_mask
        encoded: torch.Tensor = self.encoder(tokens, src_key_padding_mask=padding)
        if padding is not None:
            # The nested-tensor fast path may leave padded rows undefined; zero them.
            encoded = encoded.masked_fill(padding.unsqueeze(-1), 0.0)
        return encoded


class MLPProjector(nn.Module):
    """LayerNorm -> Linear -> GELU -> Dropout: encoder width to the LM's hidden size."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(in_dim), nn.Linear(in_dim, out_dim), nn.GELU(), nn.Dropout(dropout)
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Project [..., in_dim] to [..., out_dim]."""
        projected: torch.Tensor = self.net(tokens)
        return projected
