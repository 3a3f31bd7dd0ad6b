"""SoftPrompt, Flamingo and the text baseline around a real (tiny) LLaMA backbone."""

from __future__ import annotations

from pathlib import Path

import torch

from coral_sdk.models.opentslm.backbone import load_backbone
from coral_sdk.models.opentslm.base import IGNORE_INDEX
from coral_sdk.models.opentslm.checkpoint import build_model
from coral_sdk.models.opentslm.data import SeriesSample
from coral_sdk.models.opentslm.encoders import EncoderConfig
from coral_sdk.models.opentslm.flamingo import OpenTslmFlamingo
from coral_sdk.models.opentslm.flamingo_layers import FlamingoConfig
from coral_sdk.models.opentslm.softprompt import OpenTslmSoftPrompt
from coral_sdk.models.opentslm.training import TrainSettings, train_model

SMALL_ENCODER = {"dim": 16, "num_heads": 2, "num_layers": 1, "ff_dim": 32}
SMALL_FLAMINGO = {"depth": 1, "num_heads": 2, "dim_head": 8, "num_latents": 4}


def _softprompt(backbone: Path) -> OpenTslmSoftPrompt:
    lm, tokenizer = load_backbone(backbone)
    return OpenTslmSoftPrompt(lm, tokenizer, EncoderConfig(**SMALL_ENCODER))


def _flamingo(backbone: Path) -> OpenTslmFlamingo:
    lm, tokenizer = load_backbone(backbone)
    return OpenTslmFlamingo(
        lm, tokenizer, EncoderConfig(**SMALL_ENCODER), FlamingoConfig(**SMALL_FLAMINGO)
    )


def test_softprompt_inserts_one_soft_token_per_patch(
    tiny_backbone: Path, har_samples: list[SeriesSample]
) -> None:
    model = _softprompt(tiny_backbone)
    sample = har_samples[0]
    layout = model.layout([sample])[0]
    assert sum(layout.soft_slots) == 3 * 32 // 4
    assert [t.shape for t in layout.soft_tokens] == [(8, model.hidden_size)] * 3


def test_labels_cover_exactly_the_answer_tokens(
    tiny_backbone: Path, har_samples: list[SeriesSample]
) -> None:
    for model in (_softprompt(tiny_backbone), _flamingo(tiny_backbone)):
        batch = model.prepare(har_samples[:3], with_answer=True)
        for row, sample in enumerate(har_samples[:3]):
            supervised = batch.labels[row][batch.labels[row] != IGNORE_INDEX].tolist()
            assert supervised == [*model.text(" " + (sample.answer or "")), model.eos_id]
            # the supervised tokens are the last ones in the (left-padded) row
            assert batch.labels[row, -len(supervised) :].tolist() == supervised
        assert (batch.labels[batch.attention_mask == 0] == IGNORE_INDEX).all()


def test_flamingo_at_init_equals_the_frozen_language_model(
    tiny_backbone: Path, har_samples: list[SeriesSample]
) -> None:
    model = _flamingo(tiny_backbone).eval()
    reference, _ = load_backbone(tiny_backbone)
    batch = model.prepare(har_samples[:2], with_answer=True)
    inputs = {
        "inputs_embeds": batch.inputs_embeds,
        "attention_mask": batch.attention_mask,
        "position_ids": batch.position_ids,
    }
    with torch.no_grad():
        gated = model._lm_call(batch, None, **inputs).logits
        plain = reference(**inputs).logits
        for block in model.gated_layers.values():
            block.attn_gate.fill_(0.5)
        opened = model._lm_call(batch, None, **inputs).logits
    assert torch.equal(gated, plain)
    assert not torch.allclose(opened, plain)


def test_language_model_weights_are_frozen(tiny_backbone: Path) -> None:
    flamingo = _flamingo(tiny_backbone)
    trainable = set(flamingo.trainable_state())
    assert "lm.model.embed_tokens.weight" in trainable  # the paper trains input embeddings
    assert not any(".layers." in name and name.startswith("lm.") for name in trainable)
    softprompt = _softprompt(tiny_backbone)
    assert all(not name.startswith("lm.") for name in softprompt.trainable_state())


def test_short_training_reduces_the_loss(
    tiny_backbone: Path, har_samples: list[SeriesSample], tmp_path: Path
) -> None:
    for arch in ("softprompt", "flamingo"):
        torch.manual_seed(0)
        # The tiny backbone is barely pretrained, so SoftPrompt gets LoRA to move in 25 steps.
        settings_dict = {"encoder": SMALL_ENCODER, "flamingo": SMALL_FLAMINGO, "lora_rank": 4}
        model = build_model(arch, tiny_backbone, settings_dict, None)
        fixed = har_samples[:8]
        with torch.no_grad():
            before = float(model.compute_loss(fixed))
        settings = TrainSettings(steps=30, batch_size=8, learning_rate=1e-2, save_every=1000)
        train_model(model, fixed, tmp_path / arch, tiny_backbone, settings)
        with torch.no_grad():
            after = float(model.compute_loss(fixed))
        assert after < before - 0.2, (arch, before, after)


def test_batched_generation_equals_one_at_a_time(
    tiny_backbone: Path, har_samples: list[SeriesSample]
) -> None:
    torch.manual_seed(0)
    for model in (_softprompt(tiny_backbone).eval(), _flamingo(tiny_backbone).eval()):
        if isinstance(model, OpenTslmFlamingo):
            for block in model.gated_layers.values():
                block.attn_gate.data.fill_(0.5)
        mixed = [har_samples[0], har_samples[1]]
        short = SeriesSample(
            mixed[1].pre_prompt,
            mixed[1].series_texts,
            tuple(s[:12] for s in mixed[1].series),
            mixed[1].post_prompt,
        )
        batch = model.generate([mixed[0], short], max_new_tokens=8)
        single = [model.generate([s], max_new_tokens=8)[0] for s in (mixed[0], short)]
        assert batch == single
