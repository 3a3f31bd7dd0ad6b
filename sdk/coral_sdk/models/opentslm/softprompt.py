"""OpenTSLM-SoftPrompt: encoded series become soft tokens interleaved with the text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from coral_sdk.models.opentslm.base import SampleLayout, TimeSeriesLM
from coral_sdk.models.opentslm.data import SeriesSample
from coral_sdk.models.opentslm.encoders import (
    EncoderConfig,
    MLPProjector,
    TransformerCNNEncoder,
    pad_series_batch,
)

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def apply_lora(lm: PreTrainedModel, rank: int = 16, alpha: int = 32) -> PreTrainedModel:
    """Wrap the frozen LM with LoRA adapters (paper: r=16, alpha=32 on attention and MLP)."""
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in lm.named_modules()}
    targets = [t for t in LORA_TARGETS if t in present]
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets)
    wrapped: PreTrainedModel = get_peft_model(lm, config)  # type: ignore[assignment]
    return wrapped


class OpenTslmSoftPrompt(TimeSeriesLM):
    """[pre][text_1][soft_1]...[text_k][soft_k][post] -> answer; encoder + projector trained."""

    arch: ClassVar[str] = "softprompt"

    def __init__(
        self,
        lm: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        encoder_config: EncoderConfig = EncoderConfig(),
        lora_rank: int = 0,
    ) -> None:
        if lora_rank > 0:
            lm = apply_lora(lm, rank=lora_rank, alpha=2 * lora_rank)
        super().__init__(lm, tokenizer)
        if lora_rank > 0:
            for name, parameter in self.lm.named_parameters():
                parameter.requires_grad_("lora_" in name)
        self.encoder_config = encoder_config
        self.lora_rank = lora_rank
        self.encoder = TransformerCNNEncoder(encoder_config)
        self.projector = MLPProjector(encoder_config.dim, self.hidden_size)
        self.encoder.to(self.device)
        self.projector.to(self.device)

    def encode(self, series: list[torch.Tensor]) -> list[torch.Tensor]:
        """Soft tokens [ceil(L_i / patch), hidden] for each 1-D series."""
        batch, patch_mask = pad_series_batch(
            [s.to(self.device) for s in series], self.encoder_config.patch_size
        )
        projected = self.projector(self.encoder(batch, patch_mask))
        counts = patch_mask.sum(dim=1).tolist()
        return [projected[i, : int(n)] for i, n in enumerate(counts)]

    def layout(self, samples: Sequence[SeriesSample]) -> list[SampleLayout]:
        """Interleave text pieces and soft tokens, as OpenTSLMSP does."""
        flat = [torch.as_tensor(s) for sample in samples for s in sample.series]
        encoded = iter(self.encode(flat)) if flat else iter([])
        layouts = []
        for sample in samples:
            layout = SampleLayout()
            layout.add_text([*self.bos_ids, *self.text(sample.pre_prompt)])
            for text in sample.series_texts:
                layout.add_text(self.text(" " + text))
                layout.add_soft(next(encoded), self.pad_id)
            layout.add_text(self.text(" " + sample.post_prompt))
            layouts.append(layout)
        return layouts

    def config_dict(self) -> dict[str, Any]:
        """Encoder sizes and LoRA rank, for rebuilding from a checkpoint."""
        return {
            "arch": self.arch,
            "encoder": self.encoder_config.to_dict(),
            "lora_rank": self.lora_rank,
        }
