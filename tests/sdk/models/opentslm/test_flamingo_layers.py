"""Perceiver resampler and gated cross-attention behaviour."""

from __future__ import annotations

import torch

from coral_sdk.models.opentslm.flamingo_layers import (
    FlamingoConfig,
    GatedCrossAttentionBlock,
    PerceiverResampler,
)

CONFIG = FlamingoConfig(depth=2, num_heads=2, dim_head=8, num_latents=6)


def test_resampler_gives_a_fixed_number_of_latents_for_any_length() -> None:
    resampler = PerceiverResampler(16, CONFIG)
    for patches in (1, 16, 1024):
        assert resampler(torch.randn(3, patches, 16)).shape == (3, 6, 16)


def test_resampler_ignores_masked_media_patches() -> None:
    torch.manual_seed(0)
    resampler = PerceiverResampler(16, CONFIG).eval()
    media = torch.randn(1, 4, 16)
    padded = torch.cat([media, torch.randn(1, 3, 16) * 50], dim=1)
    mask = torch.tensor([[True] * 4 + [False] * 3])
    assert torch.allclose(resampler(media), resampler(padded, mask), atol=1e-5)


def test_gates_start_closed_so_the_block_is_the_identity() -> None:
    block = GatedCrossAttentionBlock(24, 16, CONFIG)
    x = torch.randn(2, 9, 24)
    media = torch.randn(2, 3, 6, 16)
    index = torch.randint(0, 4, (2, 9))
    assert torch.equal(block(x, media, index), x)


def _open_block(config: FlamingoConfig) -> GatedCrossAttentionBlock:
    torch.manual_seed(0)
    block = GatedCrossAttentionBlock(24, 16, config)
    with torch.no_grad():
        block.attn_gate.fill_(1.0)
    return block


def test_tokens_see_every_series_before_them_and_none_after() -> None:
    block = _open_block(CONFIG)
    x = torch.randn(1, 4, 24)
    media = torch.randn(1, 2, 6, 16)
    index = torch.tensor([[0, 1, 1, 2]])
    first_changed, second_changed = media.clone(), media.clone()
    first_changed[:, 0] = torch.randn(6, 16)  # alter only series 1
    second_changed[:, 1] = torch.randn(6, 16)  # alter only series 2
    out = block(x, media, index)
    out_first, out_second = block(x, first_changed, index), block(x, second_changed, index)
    # the ff gate is still closed, so token 0 (before any series) is untouched
    assert torch.equal(out[:, 0], x[:, 0])
    # tokens after series 1 do not see series 2 (causal over media) ...
    assert torch.allclose(out[:, 1:3], out_second[:, 1:3])
    assert not torch.allclose(out[:, 1:3], out_first[:, 1:3])
    # ... and the token after series 2 (the answer's place) sees series 1 too
    assert not torch.allclose(out[:, 3], out_first[:, 3])
    assert not torch.allclose(out[:, 3], out_second[:, 3])


def test_padded_series_slots_stay_invisible() -> None:
    block = _open_block(CONFIG)
    x = torch.randn(1, 3, 24)
    media = torch.randn(1, 3, 6, 16)
    index = torch.tensor([[1, 2, 2]])  # this sample has 2 series; slot 3 is batch padding
    padded_changed = media.clone()
    padded_changed[:, 2] = torch.randn(6, 16) * 50
    assert torch.allclose(block(x, media, index), block(x, padded_changed, index))


def test_immediate_media_option_sees_only_the_latest_series() -> None:
    block = _open_block(FlamingoConfig(**{**CONFIG.to_dict(), "only_attend_immediate_media": True}))
    x = torch.randn(1, 4, 24)
    media = torch.randn(1, 2, 6, 16)
    index = torch.tensor([[0, 1, 1, 2]])
    changed = media.clone()
    changed[:, 0] = torch.randn(6, 16)  # alter only series 1
    out, out_changed = block(x, media, index), block(x, changed, index)
    assert not torch.allclose(out[:, 1:3], out_changed[:, 1:3])
    assert torch.allclose(out[:, 3], out_changed[:, 3])
