"""coral-agent: train, evaluate, serve and run model agents.

Each model package ``coral_sdk.models.<name>`` contributes a ``cli`` module
with optional functions ``add_train_args(parser)``/``train(args)``,
``add_eval_args``/``evaluate``, ``add_run_args``/``run``. They are imported
lazily so ``coral-agent --help`` works without torch installed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

MODELS = ("trm", "opentslm", "agentflow")

# verb -> (name of the add-args function, name of the entry function)
VERBS = {
    "train": ("add_train_args", "train"),
    "eval": ("add_eval_args", "evaluate"),
    "run": ("add_run_args", "run"),
}


def _model_cli(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"coral_sdk.models.{name}.cli")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith(f"coral_sdk.models.{name}"):
            return None
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
        sub = verbs.add_parser(verb, help=f"{verb} a model")
        models = sub.add_subparsers(dest="model", required=True)
        for name in MODELS:
            module = _model_cli(name) if load_models else None
            model_parser = models.add_parser(name, help=f"{verb} {name}")
            if module is not None and hasattr(module, add_name):
                getattr(module, add_name)(model_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Serving needs no model's training CLI: skip importing them (torch et al.).
    serving = bool(argv) and argv[0] == "serve"
    args = build_parser(load_models=not serving).parse_args(argv)
    if args.verb == "serve":
        from coral_sdk.serve import serve_manifest

        return serve_manifest(args.manifest, node_url=args.node)
    module = _model_cli(args.model)
    entry = VERBS[args.verb][1]
    if module is None or not hasattr(module, entry):
        print(f"coral-agent: {args.verb} is not available for {args.model}", file=sys.stderr)
        return 2
    result = getattr(module, entry)(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
