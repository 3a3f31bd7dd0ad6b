"""coral-agent: train, evaluate, serve and run model agents.

Each model package ``coral_sdk.models.<name>`` contributes a ``cli`` module
with optional functions ``add_train_args(parser)``/``train(args)``,
``add_eval_args``/``evaluate``, ``add_run_args``/``run``. They are imported
lazily so ``coral-agent --help`` works on the base install; a command whose
optional extra is missing says which one in one line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

MODELS = ("trm", "opentslm", "agentflow")

#: Top-level modules that only an optional extra installs -> that extra's name.
EXTRA_OF_MODULE = {
    "torch": "models",
    "numpy": "models",
    "safetensors": "models",
    "transformers": "models",
    "peft": "models",
    "rank_bm25": "models",
    "tqdm": "models",
    "ray": "ray",
    "asyncpg": "postgres",
}

#: Exit status for usage errors and for a command whose optional extra is missing.
EXIT_USAGE = 2


class MissingExtra(Exception):
    """A command needs an optional extra that is not installed; ``str()`` is one line."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"this needs the '{extra}' extra (module {module!r} is missing): "
            f"pip install 'coral-node[{extra}]'"
        )
        self.extra = extra
        self.module = module


def missing_extra(exc: ModuleNotFoundError) -> MissingExtra | None:
    """The extra that would provide the module ``exc`` could not import, if any."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    return MissingExtra(extra, top) if extra else None


# verb -> (name of the add-args function, name of the entry function)
VERBS = {
    "train": ("add_train_args", "train"),
    "eval": ("add_eval_args", "evaluate"),
    "run": ("add_run_args", "run"),
}


def _model_cli(name: str) -> ModuleType | MissingExtra | None:
    """The model's CLI module; ``MissingExtra`` when its extra is not installed."""
    try:
        return importlib.import_module(f"coral_sdk.models.{name}.cli")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith(f"coral_sdk.models.{name}"):
            return None
        extra = missing_extra(exc)
        if extra is not None:
            return extra
        raise


def build_parser(load_models: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coral-agent",
        description="Train, evaluate, serve and run Coral model agents.",
        epilog="examples:\n  coral-agent serve registry/trm.toml\n"
        "  coral-agent train trm --task sudoku4 --steps 2000\n"
        "  coral-agent eval trm --checkpoint <path>",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    serve = verbs.add_parser("serve", help="run an agent from a registry manifest")
    serve.add_argument("manifest", help="path to a registry TOML manifest")
    serve.add_argument("--node", default=None, help="node HTTP URL (default: from manifest/env)")
    for verb, (add_name, _) in VERBS.items():
        sub = verbs.add_parser(
            verb,
            help=f"{verb} a model",
            description=f"{verb.capitalize()} a model. Model agents need the models extra: "
            "pip install 'coral-node[models]'",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        models = sub.add_subparsers(dest="model", required=True)
        for name in MODELS:
            module = _model_cli(name) if load_models else None
            needs = f" (needs the {module.extra} extra)" if isinstance(module, MissingExtra) else ""
            model_parser = models.add_parser(name, help=f"{verb} {name}{needs}")
            if isinstance(module, ModuleType) and hasattr(module, add_name):
                getattr(module, add_name)(model_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one ``coral-agent`` command; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _main(argv)
    except ModuleNotFoundError as exc:
        extra = missing_extra(exc)
        if extra is None:
            raise
        command = " ".join(arg for arg in argv[:2] if not arg.startswith("-"))
        print(f"coral-agent: {command}: {extra}", file=sys.stderr)
        return EXIT_USAGE


def _main(argv: list[str]) -> int:
    # Serving needs no model's training CLI: skip importing them (torch et al.).
    serving = bool(argv) and argv[0] == "serve"
    args = build_parser(load_models=not serving).parse_args(argv)
    if args.verb == "serve":
        from coral_sdk.serve import serve_manifest

        return serve_manifest(args.manifest, node_url=args.node)
    module = _model_cli(args.model)
    if isinstance(module, MissingExtra):
        print(f"coral-agent: {args.verb} {args.model}: {module}", file=sys.stderr)
        return EXIT_USAGE
    entry = VERBS[args.verb][1]
    if module is None or not hasattr(module, entry):
        print(f"coral-agent: {args.verb} is not available for {args.model}", file=sys.stderr)
        return EXIT_USAGE
    result = getattr(module, entry)(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
