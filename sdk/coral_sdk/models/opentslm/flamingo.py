"""OpenTSLM-Flamingo: series reach the LM through gated cross-attention, not the token stream.

Text: pre-prompt, then " <image> {series text} <|endofchunk|>" per series, then the
post-prompt. Each series is patch-embedded (CNNTokenizer), resampled to a fixed number of
latents (Perceiver), and every decoder layer is preceded by a tanh-gated cross-attention
block (installed as a forward pre-hook, so the LM object itself is left untouched).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from coral_sdk.models.opentslm.backbone import END_OF_CHUNK_TOKEN, MEDIA_TOKEN
from coral_sdk.models.opentslm.base import PreparedBatch, SampleLayout, TimeSeriesLM
from coral_sdk.models.opentslm.data import SeriesSample
from coral_sdk.models.opentslm.encoders import CNNTokenizer, EncoderConfig, pad_series_batch
from coral_sdk.models.opentslm.flamingo_layers import (
    FlamingoConfig,
    GatedCrossAttentionBlock,
    PerceiverResampler,
)


def decoder_layers(lm: PreTrainedModel) -> nn.ModuleList:
    """The decoder blocks of a transformers causal LM (LLaMA, Gemma, Qwen, Mistral ...)."""
    get_decoder = getattr(lm, "get_decoder", None)
    decoder = get_decoder() if callable(get_decoder) else getattr(lm, "model", None)
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(f"cannot find decoder layers in {type(lm).__name__}")
    return layers


def ensure_media_tokens(lm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Add <image> and <|endofchunk|> to a tokenizer that lacks them, growing the embeddings."""
    missing = [t for t in (MEDIA_TOKEN, END_OF_CHUNK_TOKEN) if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing})
        lm.resize_token_embeddings(len(tokenizer))


class OpenTslmFlamingo(TimeSeriesLM):
    """Frozen LM body; trains CNN tokenizer, resampler, gated cross-attention, input embeddings."""

    arch: ClassVar[str] = "flamingo"

    def __init__(
        self,
        lm: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        encoder_config: EncoderConfig = EncoderConfig(),
        flamingo_config: FlamingoConfig = FlamingoConfig(),
        train_lm_embeddings: bool = True,
    ) -> None:
        ensure_media_tokens(lm, tokenizer)
        super().__init__(lm, tokenizer)
        self.encoder_config = encoder_config
        self.flamingo_config = flamingo_config
        self.train_lm_embeddings = train_lm_embeddings
        # The paper trains the input embeddings too (freeze_lm_embeddings=False).
        self.lm.get_input_embeddings().weight.requires_grad_(train_lm_embeddings)
        media_id = tokenizer.convert_tokens_to_ids(MEDIA_TOKEN)
        if not isinstance(media_id, int):
            raise TypeError(f"{MEDIA_TOKEN} must map to one token id")
        self.media_id = media_id
        self.series_tokenizer = CNNTokenizer(encoder_config)
        self.resampler = PerceiverResampler(encoder_config.dim, flamingo_config)
        layers = decoder_layers(lm)
        every = flamingo_config.cross_attn_every_n_layers
        self.gated_layers = nn.ModuleDict(
            {
                str(i): GatedCrossAttentionBlock(
                    self.hidden_size, encoder_config.dim, flamingo_config
                )
                for i in range(len(layers))
                if (i + 1) % every == 0
            }
        )
        self.to(self.device)
        self._media: torch.Tensor | None = None
        self._media_index: torch.Tensor | None = None
        for index, block in self.gated_layers.items():
            layers[int(index)].register_forward_pre_hook(
                self._cross_attend_hook(block), with_kwargs=True
            )

    def _cross_attend_hook(self, block: nn.Module) -> Any:
        def hook(
            _module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
            if self._media is None or self._media_index is None:
                return None
            if args:
                return (block(args[0], self._media, self._media_index), *args[1:]), kwargs
            hidden = kwargs["hidden_states"]
            kwargs["hidden_states"] = block(hidden, self._media, self._media_index)
            return args, kwargs

        return hook

    def encode(self, samples: Sequence[SeriesSample]) -> torch.Tensor:
        """Latents [B, S, num_latents, dim] for the S series of each sample (zero-padded in S)."""
        flat = [torch.as_tensor(s).to(self.device) for sample in samples for s in sample.series]
        batch, patch_mask = pad_series_batch(flat, self.encoder_config.patch_size)
        latents = self.resampler(self.series_tokenizer(batch), patch_mask)
        most = max(len(sample.series) for sample in samples)
        media: torch.Tensor = latents.new_zeros((len(samples), most, *latents.shape[1:]))
        cursor = 0
        for row, sample in enumerate(samples):
            count = len(sample.series)
            media[row, :count] = latents[cursor : cursor + count]
            cursor += count
        return media

    def layout(self, samples: Sequence[SeriesSample]) -> list[SampleLayout]:
        """Text only: each series is marked by <image> ... <|endofchunk|>."""
        layouts = []
        for sample in samples:
            layout = SampleLayout()
            layout.add_text([*self.bos_ids, *self.text(sample.pre_prompt)])
            for text in sample.series_texts:
                layout.add_text(self.text(f" {MEDIA_TOKEN} {text} {END_OF_CHUNK_TOKEN}"))
            layout.add_text(self.text(" " + sample.post_prompt))
            layouts.append(layout)
        return layouts

    def prepare(self, samples: Sequence[SeriesSample], with_answer: bool) -> PreparedBatch:
        """Text inputs plus the series latents and, per token, which series it follows."""
        batch = super().prepare(samples, with_answer)
        media_index = (batch.input_ids == self.media_id).long().cumsum(dim=1)
        batch.extras["media"] = self.encode(samples)
        batch.extras["media_index"] = media_index
        batch.extras["media_count"] = media_index[:, -1:]
        return batch

    def before_lm_call(self, batch: PreparedBatch, new_ids: torch.Tensor | None) -> None:
        """Expose latents to the hooks; generated tokens follow the last series."""
        self._media = batch.extras["media"]
        self._media_index = batch.extras["media_index" if new_ids is None else "media_count"]

    def after_lm_call(self) -> None:
        """Close the hooks again so the LM used alone is the plain LM."""
        self._media = None
        self._media_index = None

    def config_dict(self) -> dict[str, Any]:
        """Encoder and resampler sizes, for rebuilding from a checkpoint."""
        return {
            "arch": self.arch,
            "encoder": self.encoder_config.to_dict(),
            "flamingo": self.flamingo_config.to_dict(),
            "train_lm_embeddings": self.train_lm_embeddings,
        }
