"""The OpenTSLM agent: answers questions about time series with a rationale and a label.

Request ``{"question": str, "series": [[float, ...], ...]}`` as a JSON data part,
or a question as text with a file part (``.npy``/``.csv``, a local path or
``file://`` URI); reply ``{"rationale", "label"}``. Concurrent requests are
answered by one batched generation.

The agent answers only what its checkpoint was trained for (the shipped ones:
the activity in a 3-axis accelerometer window, one of 8 labels). Its
registered description lists that contract (question types and labels, read
from the checkpoint), and any other question or series layout is refused with
``unsupported_question`` / ``unsupported_series`` and the contract, instead of
an activity word.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from coral.protocol.agent import AgentManifest
from coral_sdk.model_agent import ModelAgent, RequestRejected
from coral_sdk.serve import ServeSettings, run_module

if TYPE_CHECKING:
    from coral_sdk.models.opentslm.contract import AnswerContract
    from coral_sdk.models.opentslm.predictor import OpenTslmPredictor

#: The shipped checkpoints (one directory per architecture), when present.
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "models" / "opentslm" / "checkpoints"


def default_checkpoint(architecture: str = "softprompt") -> Path:
    """The shipped checkpoint for ``architecture``: its final directory, else its latest stage."""
    final = SHIPPED_DIR / architecture
    if (final / "config.json").is_file():
        return final
    stages = sorted(p.parent for p in final.glob("stage*-*/config.json"))
    return stages[-1] if stages else final


class OpenTslmAgent(ModelAgent[dict[str, Any], dict[str, str]]):
    """Validates requests on arrival, then batches them into one generation."""

    manifest = AgentManifest(name="opentslm", capabilities=("timeseries.qa",))

    max_batch_size = 16

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.predictor: OpenTslmPredictor | None = None
        from coral_sdk.models.opentslm.contract import read_contract
        from coral_sdk.registry import ManifestError

        try:
            self.contract: AnswerContract = read_contract(self.checkpoint)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ManifestError(f"options.checkpoint: cannot read its config ({exc})") from None
        # Advertise exactly what can be asked: the registered description says it.
        base = self.manifest.description.strip()
        described = f"{base} {self.contract.describe()}".strip()[:4096]
        self.manifest = self.manifest.model_copy(update={"description": described})

    @property
    def checkpoint(self) -> Path:
        """The ``checkpoint`` option, else the shipped checkpoint of ``architecture``."""
        chosen = self.options.get("checkpoint")
        if chosen:
            return Path(str(chosen))
        return default_checkpoint(str(self.options.get("architecture", "softprompt")))

    def load_model(self, device: Any) -> None:
        """Load the checkpoint (backbone plus adapter) onto ``device``."""
        from coral_sdk.models.opentslm.predictor import OpenTslmPredictor

        predictor = OpenTslmPredictor.from_checkpoint(self.checkpoint, device)
        predictor.max_new_tokens = int(self.options.get("max_new_tokens", 48))
        self.predictor = predictor

    def parse_request(self, payload: Any) -> dict[str, Any]:
        """Check the request now (file read, channel shapes) so bad ones fail alone."""
        from coral_sdk.models.opentslm.contract import UnsupportedQuestion
        from coral_sdk.models.opentslm.predictor import InvalidSeriesRequest, parse_request

        if isinstance(payload, str):
            raise RequestRejected(
                "send a JSON object {'question', 'series'} or a question with a .npy/.csv "
                f"file. {self.contract.describe()}",
                reason="invalid_series_request",
            )
        try:
            request = parse_request(payload)
        except InvalidSeriesRequest as exc:
            raise RequestRejected(str(exc), reason="invalid_series_request") from None
        asked = payload.get("question") if isinstance(payload, dict) else None
        try:
            kind = self.contract.match(asked, len(request.channels))
        except UnsupportedQuestion as exc:
            raise RequestRejected(exc.detail, reason=exc.reason) from None
        # Hand the batch validated channels, so a file is read once; the model sees the
        # prompt and series description it was trained with.
        return {
            "question": kind.prompt,
            "series": [channel.tolist() for channel in request.channels],
            "series_names": list(request.names),
            "signal": kind.signal,
        }

    def infer_batch(self, requests: list[dict[str, Any]]) -> list[dict[str, str]]:
        """One batched generation."""
        assert self.predictor is not None
        return self.predictor.predict_batch(requests)

    def health(self) -> dict[str, Any]:
        """The base health plus the answer contract."""
        return {**super().health(), "answers": self.contract.as_dict()}

    def summarize(self, data: dict[str, Any]) -> str:
        """The label, or the error."""
        if "error" in data:
            return super().summarize(data)
        return f"label: {data.get('label') or '(none)'}"


def create_agent(settings: ServeSettings) -> OpenTslmAgent:
    """Build the agent from its resolved serve settings."""
    return OpenTslmAgent(**settings.agent_kwargs())


if __name__ == "__main__":
    raise SystemExit(run_module(create_agent))
