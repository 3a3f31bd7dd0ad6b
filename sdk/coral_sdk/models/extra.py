"""What the model CLIs say when the optional ``models`` extra is not installed."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

#: Top-level modules that come with ``pip install 'coral-node[models]'``.
MODELS_EXTRA_MODULES = frozenset(
    {"numpy", "safetensors", "torch", "tqdm", "transformers", "peft", "rank_bm25"}
)

INSTALL_HINT = "pip install 'coral-node[models]'"

#: Exit status of a model command that cannot run for lack of the extra.
MISSING_EXTRA_EXIT = 3


def missing_extra_module(exc: ModuleNotFoundError) -> str | None:
    """The models-extra package whose absence raised ``exc``, or None for any other module."""
    root = (exc.name or "").split(".")[0]
    return root if root in MODELS_EXTRA_MODULES else None


def needs_models_extra(
    command: str,
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Decorate a CLI entry so a missing extra prints what to install instead of a traceback."""

    def wrap(entry: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(entry)
        def run(args: argparse.Namespace) -> int:
            try:
                return entry(args)
            except ModuleNotFoundError as exc:
                missing = missing_extra_module(exc)
                if missing is None:
                    raise
                print(
                    f"coral-agent {command}: needs {missing!r}, part of the models extra; "
                    f"install it with: {INSTALL_HINT}",
                    file=sys.stderr,
                )
                return MISSING_EXTRA_EXIT

        return run

    return wrap
