"""The TRM agent: solves grid puzzles with the Tiny Recursive Model.

Request ``{"task": "sudoku4", "grid": [[...], ...]}`` (JSON data part, or the
same JSON as text); reply ``{"solution", "supervision_steps", "halt_confidence",
"verified"}``. A malformed puzzle gets ``{"error": {"reason": "malformed_puzzle",
"detail": ...}}`` naming the exact problem.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coral.protocol.agent import AgentManifest
from coral_sdk.model_agent import ModelAgent
from coral_sdk.serve import ServeSettings, run_module

if TYPE_CHECKING:
    from coral_sdk.models.trm.solver import ParsedPuzzle, TrmSolver


class TrmAgent(ModelAgent["ParsedPuzzle", dict[str, Any]]):
    """Batches concurrent puzzles into one recursive forward of the checkpoint's TRM."""

    manifest = AgentManifest(name="trm", capabilities=("puzzle.sudoku4",))

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

    @property
    def checkpoint(self) -> str:
        """The checkpoint directory: the ``checkpoint`` option, else the shipped one."""
        from coral_sdk.models.trm import SHIPPED_CHECKPOINT

        return str(self.options.get("checkpoint") or SHIPPED_CHECKPOINT)

    def load_model(self, device: Any) -> None:
        """Load the checkpoint's EMA weights."""
        from coral_sdk.models.trm.solver import TrmSolver

        halt_early = bool(self.options.get("halt_early", True))
        self.solver = TrmSolver.from_checkpoint(self.checkpoint, device, halt_early=halt_early)

    def parse_request(self, payload: Any) -> ParsedPuzzle:
        """Validate the puzzle against the checkpoint's task (MalformedPuzzle says why not)."""
        from coral_sdk.models.trm.solver import parse_puzzle_for

        return parse_puzzle_for(self.task, payload)

    def infer_batch(self, requests: list[ParsedPuzzle]) -> list[dict[str, Any]]:
        """One batched solve."""
        assert self.solver is not None
        return self.solver.solve_batch(requests)

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
