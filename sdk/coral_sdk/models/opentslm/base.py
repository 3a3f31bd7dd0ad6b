"""What both OpenTSLM architectures (and the text-only baseline) share.

A model lays out each sample as text tokens with, optionally, soft-token slots; the base
pads the batch on the left, masks every label except the answer tokens with -100, computes
the causal-LM loss, and decodes greedily with a key/value cache.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from coral_sdk.models.opentslm.backbone import clean_decoded, token_ids
from coral_sdk.models.opentslm.data import SeriesSample

IGNORE_INDEX = -100


@dataclass
class SampleLayout:
    """One sample as token ids, with soft-token slots (placeholders in ``ids``) and labels."""

    ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    soft_slots: list[bool] = field(default_factory=list)
    soft_tokens: list[torch.Tensor] = field(default_factory=list)

    def add_text(self, ids: Sequence[int], supervised: bool = False) -> None:
        """Append text tokens; only supervised ones (the answer) get real labels."""
        self.ids.extend(ids)
        self.labels.extend(ids if supervised else [IGNORE_INDEX] * len(ids))
        self.soft_slots.extend([False] * len(ids))

    def add_soft(self, tokens: torch.Tensor, placeholder_id: int) -> None:
        """Append a [n, hidden] block of soft tokens (never supervised)."""
        count = int(tokens.shape[0])
        self.ids.extend([placeholder_id] * count)
        self.labels.extend([IGNORE_INDEX] * count)
        self.soft_slots.extend([True] * count)
        self.soft_tokens.append(tokens)


@dataclass
class PreparedBatch:
    """Left-padded model inputs for a batch of samples."""

    input_ids: torch.Tensor
    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)


class TimeSeriesLM(nn.Module):
    """Base for models that read series + text and write text through a frozen causal LM."""

    arch: ClassVar[str] = "base"

    def __init__(self, lm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__()
        self.lm = lm
        self.tokenizer = tokenizer
        self.lm.requires_grad_(False)
        eos = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id
        if eos is None:
            raise ValueError("the backbone tokenizer has no EOS token")
        self.eos_id: int = int(eos)
        self.pad_id: int = int(pad if pad is not None else eos)
        bos = tokenizer.bos_token_id
        self.bos_ids: list[int] = [] if bos is None else [int(bos)]
        self._cache_kwarg = _cache_argument_name(lm)

    @property
    def device(self) -> torch.device:
        """Where the model's weights live."""
        return next(self.lm.parameters()).device

    @property
    def hidden_size(self) -> int:
        """Width of the LM's token embeddings."""
        weight: torch.Tensor = self.lm.get_input_embeddings().weight  # type: ignore[assignment]
        return int(weight.shape[1])

    def layout(self, samples: Sequence[SeriesSample]) -> list[SampleLayout]:
        """Lay out each sample's prompt (without the answer)."""
        raise NotImplementedError

    def text(self, text: str) -> list[int]:
        """Token ids of a text piece (no special tokens)."""
        return token_ids(self.tokenizer, text)

    def prepare(self, samples: Sequence[SeriesSample], with_answer: bool) -> PreparedBatch:
        """Build left-padded embeddings, masks, positions and answer-only labels."""
        layouts = self.layout(samples)
        if with_answer:
            for layout, sample in zip(layouts, samples, strict=True):
                if sample.answer is None:
                    raise ValueError("training sample has no answer")
                layout.add_text([*self.text(" " + sample.answer), self.eos_id], supervised=True)
        longest = max(len(layout.ids) for layout in layouts)
        device = self.device
        ids = torch.full((len(layouts), longest), self.pad_id, dtype=torch.long)
        labels = torch.full((len(layouts), longest), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(layouts), longest), dtype=torch.long)
        soft = torch.zeros((len(layouts), longest), dtype=torch.bool)
        for row, layout in enumerate(layouts):
            start = longest - len(layout.ids)
            ids[row, start:] = torch.tensor(layout.ids)
            labels[row, start:] = torch.tensor(layout.labels)
            mask[row, start:] = 1
            soft[row, start:] = torch.tensor(layout.soft_slots)
        ids, labels, mask, soft = (t.to(device) for t in (ids, labels, mask, soft))
        embeds = self.lm.get_input_embeddings()(ids)
        soft_tokens = [t for layout in layouts for t in layout.soft_tokens]
        if soft_tokens:
            # masked_scatter fills slots in row-major order, the order layouts were built in.
            source = torch.cat(soft_tokens).to(embeds.dtype)
            embeds = embeds.masked_scatter(soft.unsqueeze(-1), source)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        return PreparedBatch(ids, embeds, mask, positions, labels)

    def before_lm_call(self, batch: PreparedBatch, new_ids: torch.Tensor | None) -> None:
        """Hook for Flamingo to hand series latents to its cross-attention; no-op here."""

    def after_lm_call(self) -> None:
        """Hook to drop per-call state set in ``before_lm_call``; no-op here."""

    def _lm_call(self, batch: PreparedBatch, new_ids: torch.Tensor | None, **kwargs: Any) -> Any:
        self.before_lm_call(batch, new_ids)
        try:
            return self.lm(**kwargs)
        finally:
            self.after_lm_call()

    def compute_loss(self, samples: Sequence[SeriesSample]) -> torch.Tensor:
        """Mean cross-entropy over answer tokens only."""
        batch = self.prepare(samples, with_answer=True)
        out = self._lm_call(
            batch,
            None,
            inputs_embeds=batch.inputs_embeds,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            labels=batch.labels,
            use_cache=False,
        )
        loss: torch.Tensor = out.loss
        return loss

    @torch.no_grad()
    def generate(self, samples: Sequence[SeriesSample], max_new_tokens: int = 64) -> list[str]:
        """Greedy decoding until EOS (or ``max_new_tokens``); returns cleaned text per sample."""
        batch = self.prepare(samples, with_answer=False)
        mask = batch.attention_mask
        positions = batch.position_ids
        out = self._lm_call(
            batch,
            None,
            inputs_embeds=batch.inputs_embeds,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
        )
        cache = _output_cache(out)
        finished = torch.zeros(len(samples), dtype=torch.bool, device=mask.device)
        generated: list[torch.Tensor] = []
        embed = self.lm.get_input_embeddings()
        for _ in range(max_new_tokens):
            next_ids = out.logits[:, -1].argmax(dim=-1)
            next_ids = next_ids.masked_fill(finished, self.eos_id)
            generated.append(next_ids)
            finished |= next_ids == self.eos_id
            if bool(finished.all()):
                break
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            positions = positions[:, -1:] + 1
            out = self._lm_call(
                batch,
                next_ids[:, None],
                inputs_embeds=embed(next_ids[:, None]),
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                **{self._cache_kwarg: cache},
            )
            cache = _output_cache(out)
        if not generated:
            return [""] * len(samples)
        tokens = torch.stack(generated, dim=1).tolist()
        texts = []
        for row in tokens:
            kept = row[: row.index(self.eos_id)] if self.eos_id in row else row
            texts.append(clean_decoded(str(self.tokenizer.decode(kept, skip_special_tokens=True))))
        return texts

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The parameters training changes (what a checkpoint stores)."""
        return {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}

    def config_dict(self) -> dict[str, Any]:
        """Architecture settings needed to rebuild this model around the same backbone."""
        return {"arch": self.arch}


def _cache_argument_name(lm: PreTrainedModel) -> str:
    # transformers renamed `past_key_values` to `cache`; accept either generation.
    get_base = getattr(lm, "get_base_model", None)
    base = get_base() if callable(get_base) else lm
    parameters = inspect.signature(base.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _output_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)
