"""AgentFlow loop throughput (turns/s, tokens/s) and what response caching buys.

Usage: PYTHONPATH=sdk:. python benchmarks/bench_agentflow.py [--questions 24] [--tiny-questions 6]

Two local engines, both in this process (no LLM service is reachable here):
- ``protocol``: an in-process engine that writes well-formed module replies
  instantly, so the figures measure the loop itself (prompts, parsing, memory,
  real tools: sandboxed calculator and BM25 search);
- ``tiny-gpt2``: a 2-layer GPT-2 built and saved in a temp dir, loaded with the
  local transformers engine (skipped if transformers is missing); its replies
  are noise, so the loop runs to max_steps through the parsing fallbacks.
"engine tokens/s" counts prompt + completion tokens the engine itself
processed (cache hits cost none). Every workload runs twice over the same
questions, without and with CachedEngine; the ratio is cached over uncached
throughput in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coral_sdk.models.agentflow import CachedEngine, FlowConfig, build_solver
from coral_sdk.models.agentflow.engines.base import (
    Completion,
    EngineStats,
    LLMEngine,
    estimate_tokens,
)
from coral_sdk.models.agentflow.flow_grpo.tasks import generate_tasks
from coral_sdk.models.agentflow.tools import PythonCalculatorTool
from coral_sdk.models.agentflow.tools.search import DocumentSearchTool


class ProtocolEngine:
    """Answers each module prompt at once with a well-formed reply (one tool turn, then STOP)."""

    model = "protocol-engine"

    def __init__(self) -> None:
        self.stats = EngineStats()

    async def generate(self, prompt: str, system: str | None = None, **params: Any) -> Completion:
        query = _field(prompt, "Query")
        arithmetic = re.fullmatch(r"What is ([\d\s+\-*]+)\?", query)
        if prompt.startswith("Task: Determine the optimal next step"):
            tool = "python_calculator" if arithmetic else "document_search"
            text = f"Context: none\nSub-Goal: answer {query}\nTool Name: {tool}"
        elif prompt.startswith("Task: Generate a precise command"):
            if arithmetic:
                text = f'```python\nexecution = tool.execute(code="{arithmetic.group(1)}")\n```'
            else:
                text = f'```python\nexecution = tool.execute(query="{query}")\n```'
        elif prompt.startswith("Task: Evaluate whether"):
            text = "The memory answers the query.\nConclusion: STOP"
        else:
            text = f"An answer to: {query}"
        completion = Completion(
            text, estimate_tokens((system or "") + prompt), estimate_tokens(text)
        )
        self.stats.record(completion)
        return completion


def _field(prompt: str, name: str) -> str:
    match = re.search(rf"^{name}: (.*)$", prompt, re.MULTILINE)
    return match.group(1).strip() if match else ""


@dataclass
class Measurement:
    turns_per_s: float
    tokens_per_s: float
    hit_rate: float
    seconds: float


async def measure(
    engine: LLMEngine, questions: list[str], max_steps: int, cache: bool
) -> Measurement:
    """Solve every question twice (a repeated workload) and count turns and engine tokens."""
    llm: LLMEngine = CachedEngine(engine) if cache else engine
    tools = [PythonCalculatorTool(), DocumentSearchTool()]
    solver = build_solver(llm, tools=tools, config=FlowConfig(max_steps=max_steps))
    tokens_before = engine.stats.prompt_tokens + engine.stats.completion_tokens
    turns = 0
    started = time.perf_counter()
    for question in questions + questions:
        turns += (await solver.solve(question)).step_count
    seconds = time.perf_counter() - started
    tokens = engine.stats.prompt_tokens + engine.stats.completion_tokens - tokens_before
    hit_rate = llm.stats.cache_hit_rate if isinstance(llm, CachedEngine) else 0.0
    return Measurement(turns / seconds, tokens / seconds, hit_rate, seconds)


def build_tiny_gpt2(directory: Path, vocabulary_text: str) -> None:
    """Save a randomly initialised 2-layer GPT-2 with a word-level tokenizer."""
    import tokenizers
    import transformers

    words = sorted(set(re.findall(r"\w+|[^\w\s]", vocabulary_text)))
    vocab = {"[UNK]": 0, "[EOS]": 1, **{word: index + 2 for index, word in enumerate(words)}}
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", eos_token="[EOS]", pad_token="[EOS]"
    )
    config = transformers.GPT2Config(
        vocab_size=len(vocab),
        n_positions=4096,
        n_embd=64,
        n_layer=2,
        n_head=4,
        bos_token_id=1,
        eos_token_id=1,
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(directory)
    fast.save_pretrained(directory)


def vocabulary_text() -> str:
    """Words the tiny model's tokenizer knows: the prompt templates and the corpus."""
    from coral_sdk.models.agentflow import prompts
    from coral_sdk.models.agentflow.tools.search import SHIPPED_CORPUS

    corpus = " ".join(path.read_text() for path in SHIPPED_CORPUS.glob("*.txt"))
    return Path(prompts.__file__).read_text() + corpus


def report(name: str, plain: Measurement, cached: Measurement) -> None:
    print(f"\n{name}")
    print(
        f"  no cache : {plain.turns_per_s:8.1f} turns/s {plain.tokens_per_s:10.0f} engine tokens/s"
    )
    print(
        f"  cache    : {cached.turns_per_s:8.1f} turns/s "
        f"{cached.tokens_per_s:10.0f} engine tokens/s (hit rate {cached.hit_rate:.0%})"
    )
    print(f"  cached / uncached wall-clock speed-up: {plain.seconds / cached.seconds:.2f}x")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--tiny-questions", type=int, default=6)
    args = parser.parse_args()
    tasks = generate_tasks(args.questions, seed=1)
    questions = [task.question for task in tasks if task.kind != "compose"]
    print(f"protocol engine: {len(questions)} questions x 2 passes, max 3 steps")
    plain = await measure(ProtocolEngine(), questions, 3, cache=False)
    cached = await measure(ProtocolEngine(), questions, 3, cache=True)
    report("protocol engine, arithmetic + lookup (loop + sandbox + BM25)", plain, cached)
    # Many more lookups: each solve takes about a millisecond, so short runs are noise.
    more = generate_tasks(args.questions * 6, seed=2)
    lookups = [task.question for task in more if task.kind == "lookup"]
    plain = await measure(ProtocolEngine(), lookups, 3, cache=False)
    cached = await measure(ProtocolEngine(), lookups, 3, cache=True)
    report(
        f"protocol engine, {len(lookups)} lookups only (loop + BM25, no subprocess)", plain, cached
    )
    try:
        import transformers  # noqa: F401

        from coral_sdk.models.agentflow.engines.local_transformers import TransformersEngine
    except ModuleNotFoundError:
        print("\ntiny-gpt2: skipped (transformers not installed)")
        return 0
    tiny = questions[: args.tiny_questions]
    with tempfile.TemporaryDirectory() as directory:
        build_tiny_gpt2(Path(directory), vocabulary_text())
        engine = TransformersEngine(directory, max_new_tokens=16)
        print(f"\ntiny-gpt2 on {engine.device}: {len(tiny)} questions x 2 passes, max 2 steps")
        plain = await measure(engine, tiny, 2, cache=False)
        cached = await measure(engine, tiny, 2, cache=True)
    report("tiny-gpt2 local transformers engine", plain, cached)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
