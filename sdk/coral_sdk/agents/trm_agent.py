"""The TRM agent: solves grid puzzles with the Tiny Recursive Model.

Request ``{"task": "sudoku6", "grid": [[...], ...]}`` (JSON data part, or the
same JSON as text; the task is the checkpoint's); reply ``{"solution",
"supervision_steps", "halt_confidence", "verified"}``. A malformed puzzle gets
``{"error": {"reason": "malformed_puzzle", "detail": ...}}`` naming the exact
problem.

Each puzzle keeps taking supervision steps until its answer passes the task's
checker or N_sup steps ran (option ``until_valid``, default true), and
concurrent puzzles share a continuous batch: a puzzle leaves the batch the
step it is solved, and newly arrived puzzles join at the next step.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from coral.protocol.agent import AgentManifest
from coral_sdk.model_agent import ModelAgent
from coral_sdk.runtime.continuous import ContinuousBatcher, StepBatch
from coral_sdk.serve import ServeSettings, run_module

if TYPE_CHECKING:
    from coral_sdk.models.trm.solver import ParsedPuzzle, TrmSolver


class TrmAgent(ModelAgent["ParsedPuzzle", dict[str, Any]]):
    """Solves puzzles with the checkpoint's TRM, continuously batched per supervision step."""

    manifest = AgentManifest(name="trm", capabilities=("puzzle.sudoku6",))

    max_batch_size = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.solver: TrmSolver | None = None
        # Parsing needs only the checkpoint's task, not the weights: read it now so a
        # malformed puzzle is refused at once, without loading the model.
        from coral_sdk.models.trm.checkpoint import read_config
        from coral_sdk.models.trm.tasks import get_task
        from coral_sdk.registry import ManifestError

        try:
            self.task = get_task(read_config(self.checkpoint).train.task)
        except (OSError, ValueError) as exc:
            raise ManifestError(f"options.checkpoint: {exc}") from None
        self.continuous: ContinuousBatcher[ParsedPuzzle, dict[str, Any]] = ContinuousBatcher(
            self._new_step_batch, run_step=self._run_step, name=f"{self.manifest.name}-steps"
        )

    @property
    def checkpoint(self) -> str:
        """The checkpoint directory: the ``checkpoint`` option, else the shipped one."""
        from coral_sdk.models.trm import SHIPPED_CHECKPOINT

        return str(self.options.get("checkpoint") or SHIPPED_CHECKPOINT)

    def load_model(self, device: Any) -> None:
        """Load the checkpoint's EMA weights."""
        from coral_sdk.models.trm.solver import TrmSolver

        self.solver = TrmSolver.from_checkpoint(
            self.checkpoint,
            device,
            until_valid=bool(self.options.get("until_valid", True)),
            max_steps=int(self.options.get("max_steps") or 0) or None,
            max_batch=int(self.options.get("max_batch_size", self.max_batch_size)),
        )

    def parse_request(self, payload: Any) -> ParsedPuzzle:
        """Validate the puzzle against the checkpoint's task (MalformedPuzzle says why not)."""
        from coral_sdk.models.trm.solver import parse_puzzle_for

        return parse_puzzle_for(self.task, payload)

    def infer_batch(self, requests: list[ParsedPuzzle]) -> list[dict[str, Any]]:
        """Solve a batch to completion (used when not going through ``answer``)."""
        assert self.solver is not None
        return self.solver.solve_batch(requests)

    async def answer(self, request: ParsedPuzzle) -> dict[str, Any]:
        """Join the continuous batch; resolves the supervision step the puzzle finishes on."""
        return await self.continuous.submit(request)

    async def run(self) -> None:
        """Serve with the continuous batcher running next to the agent loop."""
        await self.continuous.start()
        try:
            await super().run()
        finally:
            await self.continuous.aclose()

    def health(self) -> dict[str, Any]:
        """The base health plus continuous-batching counters."""
        health = super().health()
        stats = self.continuous.stats()
        health["continuous"] = {
            "supervision_steps_run": stats.steps,
            "puzzles_answered": stats.items,
            "live": stats.live,
            "mean_batch_size": round(stats.mean_batch_size, 3),
        }
        return health

    def _new_step_batch(self) -> StepBatch[ParsedPuzzle, dict[str, Any]]:
        # Called in the worker thread on first use: the model loads there.
        if not self.model_loaded:
            self._load()
        assert self.solver is not None
        return self.solver.new_batch()

    def _run_step(
        self, step: Callable[[], list[tuple[Hashable, dict[str, Any]]]]
    ) -> list[tuple[Hashable, dict[str, Any]]]:
        import torch

        with torch.inference_mode():
            return step()

    def summarize(self, data: dict[str, Any]) -> str:
        """A one-line account of the answer."""
        if "error" in data:
            return super().summarize(data)
        checked = "verified" if data.get("verified") else "not verified"
        return f"solved in {data['supervision_steps']} supervision steps ({checked})"


def create_agent(settings: ServeSettings) -> TrmAgent:
    """Build the agent from its resolved serve settings."""
    return TrmAgent(**settings.agent_kwargs())


if __name__ == "__main__":
    raise SystemExit(run_module(create_agent))
