"""The local transformers engine on a tiny GPT-2 built in the test (no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coral_sdk.models.agentflow.errors import EngineError

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

WORDS = "the answer is one two three four five six seven eight nine ten what plus".split()


def build_tiny_model(directory: Path) -> None:
    vocab = {"[UNK]": 0, "[EOS]": 1, **{word: index + 2 for index, word in enumerate(WORDS)}}
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", eos_token="[EOS]", pad_token="[EOS]"
    )
    config = transformers.GPT2Config(
        vocab_size=len(vocab),
        n_positions=64,
        n_embd=16,
        n_layer=1,
        n_head=2,
        bos_token_id=1,
        eos_token_id=1,
    )
    model = transformers.GPT2LMHeadModel(config)
    model.save_pretrained(directory)
    fast.save_pretrained(directory)


async def test_local_model_generates_and_counts_tokens(tmp_path: Path) -> None:
    from coral_sdk.models.agentflow.engines.local_transformers import TransformersEngine

    build_tiny_model(tmp_path)
    engine = TransformersEngine(tmp_path, max_new_tokens=4)
    assert engine.device in {"cpu", "cuda"}
    completion = await engine.generate("what is one plus two", system="the answer")
    assert completion.prompt_tokens == 7  # system + prompt words, no chat template
    assert 1 <= completion.completion_tokens <= 4
    assert isinstance(completion.text, str)
    assert (
        engine.stats.calls == 1 and engine.stats.completion_tokens == completion.completion_tokens
    )


def test_missing_model_directory_is_a_clear_engine_error(tmp_path: Path) -> None:
    from coral_sdk.models.agentflow.engines.local_transformers import TransformersEngine

    with pytest.raises(EngineError, match="model directory not found"):
        TransformersEngine(tmp_path / "absent")
    with pytest.raises(EngineError, match="cannot load a causal LM"):
        TransformersEngine(tmp_path)  # exists, but holds no model


def test_cuda_request_without_cuda_is_an_engine_error(tmp_path: Path) -> None:
    import torch

    from coral_sdk.models.agentflow.engines.local_transformers import TransformersEngine

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(EngineError, match="CUDA is not available"):
        TransformersEngine(tmp_path, device="cuda")
