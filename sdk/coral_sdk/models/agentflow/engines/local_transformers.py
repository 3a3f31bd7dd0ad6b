"""Local causal-LM engine over Hugging Face ``transformers`` for a model directory on disk.

``transformers`` and ``torch`` are imported only when the engine is built, so
the rest of AgentFlow works without them. Generation runs in a worker thread
(one at a time) so the event loop stays responsive; CUDA is used when present.
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Any

from coral_sdk.models.agentflow.engines.base import Completion, EngineStats
from coral_sdk.models.agentflow.errors import EngineError, EngineNotInstalled


class TransformersEngine:
    """Greedy or sampled generation from a local ``AutoModelForCausalLM`` directory.

    ``device`` is any torch device string or "auto" (CUDA when present). A call
    cancelled mid-generation lets that generation finish in its worker thread.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str | None = None,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
    ) -> None:
        try:
            self._torch: Any = importlib.import_module("torch")
            transformers: Any = importlib.import_module("transformers")
        except ModuleNotFoundError as exc:
            raise EngineNotInstalled(
                f"the local engine needs `{exc.name}` (pip install 'coral-node[models]')"
            ) from None
        path = Path(model_dir)
        if not path.is_dir():
            raise EngineError(f"model directory not found: {path}")
        self.model = path.name
        self.stats = EngineStats()
        from coral_sdk.runtime.device import DeviceUnavailable, pick_device  # needs torch

        try:
            self.device = str(pick_device(device))
        except DeviceUnavailable as exc:
            raise EngineError(str(exc)) from None
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        # bf16 halves memory on GPUs; CPUs run float32 faster and more exactly.
        dtype = self._torch.bfloat16 if self.device.startswith("cuda") else self._torch.float32
        try:
            self._tokenizer = transformers.AutoTokenizer.from_pretrained(path)
            self._model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise EngineError(f"cannot load a causal LM from {path}: {exc}") from None
        self._model.to(self.device).eval()
        self._lock = asyncio.Lock()

    def render_prompt(self, prompt: str, system: str | None) -> str:
        """Apply the tokenizer's chat template when it has one, else a plain layout."""
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        if getattr(self._tokenizer, "chat_template", None):
            rendered = self._tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            return str(rendered)
        header = f"{system}\n\n" if system else ""
        return f"{header}{prompt}\n"

    async def generate(self, prompt: str, system: str | None = None, **params: Any) -> Completion:
        """Generate a completion in a worker thread; one generation at a time per engine."""
        text = self.render_prompt(prompt, system)
        async with self._lock:
            completion = await asyncio.to_thread(self._generate_sync, text, params)
        self.stats.record(completion)
        return completion

    def _pad_token_id(self) -> int | None:
        pad = self._tokenizer.pad_token_id
        return int(pad) if pad is not None else self._tokenizer.eos_token_id

    def _generate_sync(self, text: str, params: dict[str, Any]) -> Completion:
        encoded = self._tokenizer(text, return_tensors="pt").to(self.device)
        prompt_length = int(encoded["input_ids"].shape[1])
        temperature = float(params.get("temperature", self.temperature))
        options: dict[str, Any] = {
            "max_new_tokens": int(params.get("max_tokens", self.max_new_tokens)),
            "do_sample": temperature > 0,
            "pad_token_id": self._pad_token_id(),
        }
        if temperature > 0:
            options["temperature"] = temperature
        with self._torch.inference_mode():
            output = self._model.generate(**encoded, **options)
        new_tokens = output[0, prompt_length:]
        decoded = self._tokenizer.decode(new_tokens, skip_special_tokens=True)
        return Completion(
            text=str(decoded),
            prompt_tokens=prompt_length,
            completion_tokens=int(new_tokens.shape[0]),
        )
