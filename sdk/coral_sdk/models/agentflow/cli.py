"""``coral-agent run agentflow "question"`` and ``coral-agent train agentflow`` (Flow-GRPO demo).

Imports stay light at module level: ``coral-agent --help`` loads this file, and
torch is only needed by ``train``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from coral_sdk.models.agentflow.engines.base import LLMEngine
    from coral_sdk.models.agentflow.flow_grpo.trainer import IterationStats
    from coral_sdk.models.agentflow.solver import FlowEvent

_PREVIEW_CHARS = 600


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """Options for answering one question with the AgentFlow loop."""
    parser.add_argument("question", help="the question to solve")
    parser.add_argument(
        "--engine",
        choices=("openai", "transformers"),
        default="openai",
        help="openai: any OpenAI-compatible HTTP service; transformers: a local model directory",
    )
    parser.add_argument(
        "--base-url",
        default=None,
        help="e.g. http://127.0.0.1:8000/v1 (default: $AGENTFLOW_BASE_URL or $OPENAI_BASE_URL)",
    )
    # dest differs from "model": coral-agent already stores the model family ("agentflow") there.
    parser.add_argument(
        "--model",
        dest="llm_model",
        default=None,
        help="model name, or model directory for --engine transformers (default: $AGENTFLOW_MODEL)",
    )
    parser.add_argument("--device", default="auto", help="transformers engine: auto, cpu, cuda")
    parser.add_argument("--max-steps", type=int, default=10, help="turn limit (default 10)")
    parser.add_argument("--max-time", type=float, default=300.0, help="seconds (default 300)")
    parser.add_argument(
        "--corpus",
        type=Path,
        default=None,
        help="directory of .txt/.md files for document_search (default: shipped)",
    )
    parser.add_argument("--retries", type=int, default=4, help="retries per LLM call (default 4)")
    parser.add_argument("--no-cache", action="store_true", help="do not cache LLM responses")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")


def run(args: argparse.Namespace) -> int:
    """Solve ``args.question``, printing each turn as it happens, then the answer."""
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from coral_sdk.models.agentflow.engines.base import CachedEngine
    from coral_sdk.models.agentflow.errors import AgentFlowError
    from coral_sdk.models.agentflow.factory import build_solver, default_tools
    from coral_sdk.models.agentflow.solver import FlowConfig

    console = Console()
    try:
        engine = _make_engine(args)
    except AgentFlowError as exc:
        console.print(f"[red]cannot start the engine:[/red] {exc.detail}")
        return 1
    llm: LLMEngine = engine if args.no_cache else CachedEngine(engine)
    try:
        solver = build_solver(
            llm,
            tools=default_tools(llm, args.corpus),
            config=FlowConfig(max_steps=args.max_steps, max_time_s=args.max_time),
        )
        result = await solver.solve(args.question, on_event=lambda e: _print_event(console, e))
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            await close()
    if args.json:
        console.print_json(json.dumps(result.to_dict(), default=str))
    stats = engine.stats
    console.print(
        f"[dim]{result.step_count} step(s), {result.execution_time_s:.1f} s, "
        f"{stats.prompt_tokens}+{stats.completion_tokens} tokens, stop: {result.stop_reason}[/dim]"
    )
    return 0 if result.direct_output else 1


def _make_engine(args: argparse.Namespace) -> Any:
    if args.engine == "transformers":
        from coral_sdk.models.agentflow.engines.local_transformers import TransformersEngine

        if not args.llm_model:
            raise SystemExit("--engine transformers needs --model <model directory>")
        return TransformersEngine(args.llm_model, device=args.device)
    from coral_sdk.models.agentflow.engines.openai_http import (
        OpenAICompatibleEngine,
        OpenAIEngineConfig,
    )

    return OpenAICompatibleEngine(
        OpenAIEngineConfig.from_env(
            base_url=args.base_url, model=args.llm_model, max_retries=args.retries
        )
    )


def _preview(value: Any) -> str:
    """Shortened, markup-escaped text: model output may contain [brackets] rich would parse."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return escape(text if len(text) <= _PREVIEW_CHARS else text[:_PREVIEW_CHARS] + " ...")


def _print_event(console: Console, event: FlowEvent) -> None:
    from coral_sdk.models.agentflow.solver import (
        QueryAnalyzed,
        SolveResult,
        StepPlanned,
        TurnCompleted,
    )

    if isinstance(event, QueryAnalyzed):
        console.print(Panel(_preview(event.analysis), title="query analysis", border_style="blue"))
    elif isinstance(event, StepPlanned):
        tool = event.planned.tool_name or "[red]no valid tool[/red]"
        goal = _preview(event.planned.sub_goal)
        console.print(f"[bold]step {event.step}[/bold] -> {tool}: {goal}")
    elif isinstance(event, TurnCompleted):
        verdict = "STOP" if event.verdict and event.verdict.stop else "CONTINUE"
        console.print(f"  [cyan]command[/cyan] {_preview(event.action.command)}")
        console.print(f"  [green]result[/green]  {_preview(event.action.result)}")
        console.print(f"  [magenta]verifier[/magenta] {verdict} ({event.elapsed_s:.1f} s)")
    elif isinstance(event, SolveResult):
        for problem in event.problems:
            console.print(f"[yellow]note:[/yellow] {escape(problem)}")
        if event.final_output:
            console.print(Panel(escape(event.final_output), title="solution", border_style="green"))
        console.print(Panel(escape(event.direct_output or "(no answer)"), title="answer"))


def add_train_args(parser: argparse.ArgumentParser) -> None:
    """Options for the Flow-GRPO planner-training demo."""
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--queries", type=int, default=8, help="queries per iteration")
    parser.add_argument("--group-size", type=int, default=8, help="rollouts per query (G)")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--kl-coef", type=float, default=0.001)
    parser.add_argument("--clip-low", type=float, default=0.2)
    parser.add_argument("--clip-high", type=float, default=0.3)
    parser.add_argument("--max-steps", type=int, default=3, help="tool turns per rollout")
    parser.add_argument("--tasks", type=int, default=60, help="training task pool size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--progress", action="store_true", help="show the progress bar even when not a terminal"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="directory for the trained planner (policy.safetensors, planner.json) and its curve",
    )


def train(args: argparse.Namespace) -> int:
    """Train the tiny planner policy with Flow-GRPO and print the reward curve."""
    return asyncio.run(_train(args))


async def _train(args: argparse.Namespace) -> int:

    from coral_sdk.models.agentflow.flow_grpo.tasks import generate_tasks
    from coral_sdk.models.agentflow.flow_grpo.trainer import FlowGRPOConfig, FlowGRPOTrainer

    console = Console()
    config = FlowGRPOConfig(
        iterations=args.iterations,
        queries_per_iteration=args.queries,
        group_size=args.group_size,
        learning_rate=args.lr,
        kl_coef=args.kl_coef,
        clip_low=args.clip_low,
        clip_high=args.clip_high,
        max_steps=args.max_steps,
        task_pool_size=args.tasks,
        seed=args.seed,
    )
    trainer = FlowGRPOTrainer(config)
    held_out = generate_tasks(max(9, args.tasks // 2), seed=args.seed + 10_000)
    before = (await trainer.evaluate(), await trainer.evaluate(held_out))

    progress = Progress(
        TextColumn("[bold]flow-grpo"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal and not args.progress,
    )
    bar = progress.add_task("train", total=config.iterations, rate="")
    started = time.perf_counter()

    def report(stats: IterationStats) -> None:
        elapsed = max(time.perf_counter() - started, 1e-9)
        progress.update(bar, advance=1, rate=f"{stats.iteration / elapsed:.2f} it/s")
        progress.console.print(
            f"iter {stats.iteration:3d}  reward {stats.mean_reward:.3f}  loss {stats.loss:+.4f}  "
            f"kl {stats.kl:.3f}  clipped {stats.clip_fraction:.2f}  turns {stats.mean_turns:.2f}"
        )

    with progress:
        history = await trainer.train(report)
    after = (await trainer.evaluate(), await trainer.evaluate(held_out))
    window = max(1, min(3, len(history)))
    start = sum(s.mean_reward for s in history[:window]) / window
    end = sum(s.mean_reward for s in history[-window:]) / window
    table = Table(title="Flow-GRPO planner training")
    table.add_column("measure")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_row(f"sampled rollout reward (mean of {window} iters)", f"{start:.3f}", f"{end:.3f}")
    table.add_row("greedy accuracy, training tasks", f"{before[0]:.3f}", f"{after[0]:.3f}")
    table.add_row("greedy accuracy, held-out tasks", f"{before[1]:.3f}", f"{after[1]:.3f}")
    console.print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        from coral_sdk.models.agentflow.flow_grpo.policy import save_planner

        measured = {
            "train_greedy_accuracy": [round(before[0], 4), round(after[0], 4)],
            "heldout_greedy_accuracy": [round(before[1], 4), round(after[1], 4)],
            "config": config.__dict__,
        }
        save_planner(args.out, trainer.policy, trainer.featurizer, measured)
        curve = [stats.__dict__ for stats in history]
        (args.out / "reward_curve.json").write_text(json.dumps(curve, indent=1), "utf-8")
        console.print(f"wrote the trained planner and reward_curve.json to {args.out}")
    return 0 if end > start else 1
