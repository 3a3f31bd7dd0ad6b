"""The causal language model under both architectures, always loaded from a local directory.

``build_small_backbone`` makes the repo's own tiny LLaMA-architecture model: a word-level
tokenizer (digits split one per token) trained on generated prompt text, a ``LlamaConfig``
of a few layers, and a short causal-LM pretraining on that text. Any other
``transformers`` causal LM saved in a directory loads through ``load_backbone`` unchanged.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from coral_sdk.models.opentslm.data import SeriesSample, render_series_as_text

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
# Flamingo marks where each series sits in the text with these two tokens.
MEDIA_TOKEN = "<image>"
END_OF_CHUNK_TOKEN = "<|endofchunk|>"
DIGITS_AND_SIGNS = [*"0123456789", "-", ".", ":", ",", "<", ">", "_"]


@dataclass(frozen=True)
class BackboneShape:
    """Size of the repo's small LLaMA backbone."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 128
    max_positions: int = 8192


def sample_text(sample: SeriesSample, with_series_numbers: bool) -> str:
    """The whole prompt and answer as plain text (numbers in place of series if asked)."""
    parts = [sample.pre_prompt]
    for text, values in zip(sample.series_texts, sample.series, strict=True):
        parts.append(text)
        if with_series_numbers:
            parts.append(render_series_as_text(values))
    parts.append(sample.post_prompt)
    if sample.answer is not None:
        parts.append(sample.answer)
    return " ".join(parts)


def train_word_tokenizer(corpus: Iterable[str], out_dir: Path) -> PreTrainedTokenizerFast:
    """Train and save a word-level tokenizer whose digits are single tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    special = [PAD, UNK, BOS, EOS, MEDIA_TOKEN, END_OF_CHUNK_TOKEN]
    trainer = trainers.WordLevelTrainer(special_tokens=special, min_frequency=1)
    tokenizer.train_from_iterator([*corpus, " ".join(DIGITS_AND_SIGNS)], trainer=trainer)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK
    )
    fast.add_special_tokens({"additional_special_tokens": [MEDIA_TOKEN, END_OF_CHUNK_TOKEN]})
    fast.save_pretrained(str(out_dir))
    return fast


def load_backbone(
    local_dir: str | Path, device: torch.device | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from ``local_dir`` only (never from a hub)."""
    from transformers import AutoTokenizer

    path = Path(local_dir)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no causal LM config.json in {path}")
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if device is not None:
        model.to(device)  # type: ignore[arg-type]
    model.eval()  # type: ignore[no-untyped-call]
    return model, tokenizer


def build_small_backbone(
    out_dir: Path,
    corpus_samples: Sequence[SeriesSample],
    shape: BackboneShape = BackboneShape(),
    pretrain_steps: int = 300,
    batch_size: int = 16,
    seed: int = 0,
    device: torch.device | None = None,
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """Create, pretrain briefly and save the small LLaMA backbone and tokenizer in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    # Both prompt styles are in the tokenizer corpus so text-only prompts never hit <unk>.
    texts = [sample_text(s, with_series_numbers=False) for s in corpus_samples]
    numbered = [sample_text(s, with_series_numbers=True) for s in corpus_samples[:8]]
    tokenizer = train_word_tokenizer(texts + numbered, out_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_heads,
        max_position_embeddings=shape.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    target = device or torch.device("cpu")
    model.to(target)  # type: ignore[arg-type]
    _pretrain(model, tokenizer, texts, pretrain_steps, batch_size, seed, target)
    model.eval()  # type: ignore[no-untyped-call]
    model.save_pretrained(str(out_dir), safe_serialization=True)
    (out_dir / "coral_backbone.json").write_text(
        json.dumps({"pretrain_steps": pretrain_steps, "corpus_size": len(texts), "seed": seed})
    )
    return model, tokenizer


def _pretrain(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    texts: Sequence[str],
    steps: int,
    batch_size: int,
    seed: int,
    device: torch.device,
) -> None:
    """Plain next-token training on the generated text (the "pretrained LM" stand-in)."""
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    model.train()
    progress = tqdm(range(steps), desc="pretrain backbone", leave=False)
    for _ in progress:
        batch = [f"{BOS} {t} {EOS}" for t in rng.sample(list(texts), min(batch_size, len(texts)))]
        encoded = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
        input_ids = encoded["input_ids"].to(device)
        mask = encoded["attention_mask"].to(device)
        labels = input_ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        progress.set_postfix(loss=f"{loss.item():.3f}")


def clean_decoded(text: str) -> str:
    """Join a word-level decode back into prose ("Answer : x ." -> "Answer: x.")."""
    import re

    text = re.sub(r"\s+([.,:;!?])", r"\1", text)
    return re.sub(r"(?<=\d) (?=\d)", "", text).strip()


def token_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of ``text`` without any special tokens added."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch together."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
