"""Encoder, tokenizer and projector shapes, and padding that does not leak into results."""

from __future__ import annotations

import pytest
import torch

from coral_sdk.models.opentslm.encoders import (
    CNNTokenizer,
    EncoderConfig,
    MLPProjector,
    TransformerCNNEncoder,
    pad_series_batch,
)

CONFIG = EncoderConfig(dim=16, num_heads=2, num_layers=2, ff_dim=32)


def test_pad_series_batch_pads_to_a_patch_multiple_and_masks_real_patches() -> None:
    batch, mask = pad_series_batch([torch.ones(5), torch.ones(12)], patch_size=4)
    assert batch.shape == (2, 12)
    assert batch[0, 5:].abs().sum() == 0
    assert mask.tolist() == [[True, True, False], [True, True, True]]


@pytest.mark.parametrize("length", [4, 64, 4096])
def test_transformer_cnn_encoder_emits_one_token_per_patch(length: int) -> None:
    encoder = TransformerCNNEncoder(CONFIG).eval()
    out = encoder(torch.randn(3, length))
    assert out.shape == (3, length // 4, 16)


def test_cnn_tokenizer_shape_and_length_limit() -> None:
    tokenizer = CNNTokenizer(CONFIG)
    assert tokenizer(torch.randn(2, 40)).shape == (2, 10, 16)
    with pytest.raises(ValueError, match="patches"):
        tokenizer(torch.randn(1, 4100))


def test_mlp_projector_maps_to_the_lm_width() -> None:
    assert MLPProjector(16, 48)(torch.randn(2, 7, 16)).shape == (2, 7, 48)


def test_padding_a_series_in_a_batch_does_not_change_its_encoding() -> None:
    torch.manual_seed(0)
    encoder = TransformerCNNEncoder(CONFIG).eval()
    short = torch.randn(20)
    alone_batch, alone_mask = pad_series_batch([short])
    both_batch, both_mask = pad_series_batch([short, torch.randn(64)])
    with torch.no_grad():
        alone = encoder(alone_batch, alone_mask)[0]
        together = encoder(both_batch, both_mask)[0, :5]
    assert torch.allclose(alone, together, atol=1e-5)
