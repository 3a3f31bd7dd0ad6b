"""The text-only baseline: the same backbone reads the series printed as numbers (LoRA-tuned)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from coral_sdk.models.opentslm.base import SampleLayout, TimeSeriesLM
from coral_sdk.models.opentslm.data import SeriesSample, render_series_as_text
from coral_sdk.models.opentslm.softprompt import apply_lora


class TextOnlyBaseline(TimeSeriesLM):
    """Prompt = pre-prompt, each series text followed by its values as text, post-prompt."""

    arch: ClassVar[str] = "text_baseline"

    def __init__(
        self,
        lm: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        lora_rank: int = 16,
        decimals: int = 1,
    ) -> None:
        super().__init__(apply_lora(lm, rank=lora_rank, alpha=2 * lora_rank), tokenizer)
        for name, parameter in self.lm.named_parameters():
            parameter.requires_grad_("lora_" in name)
        self.lora_rank = lora_rank
        self.decimals = decimals

    def layout(self, samples: Sequence[SeriesSample]) -> list[SampleLayout]:
        """All text: the series are rendered with ``decimals`` digits after the point."""
        layouts = []
        for sample in samples:
            layout = SampleLayout()
            layout.add_text([*self.bos_ids, *self.text(sample.pre_prompt)])
            for text, values in zip(sample.series_texts, sample.series, strict=True):
                numbers = render_series_as_text(values, self.decimals)
                layout.add_text(self.text(f" {text} {numbers}"))
            layout.add_text(self.text(" " + sample.post_prompt))
            layouts.append(layout)
        return layouts

    def config_dict(self) -> dict[str, Any]:
        """LoRA rank and number format, for rebuilding from a checkpoint."""
        return {"arch": self.arch, "lora_rank": self.lora_rank, "decimals": self.decimals}
