"""The ``coral-node`` command line: start, init, status, keys, agents, ledger, a2a, mcp, doctor.

``main`` starts the node without importing typer when the command line is a
plain ``coral-node start ...`` (see ``coral.cli.start``); every other command,
and ``start --help`` or a start command line it does not read, goes to the
typer app in ``coral.cli.main``. ``app`` is that typer app, imported on first use.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["app", "main"]


def main() -> None:
    """Run ``coral-node`` on ``sys.argv``."""
    argv = sys.argv[1:]
    if argv[:1] == ["start"]:
        from coral.cli.start import parse_start_args, start_node

        args = parse_start_args(argv[1:])
        if args is not None:
            start_node(args)
            return
    from coral.cli.main import main as typer_main

    typer_main()


def __getattr__(name: str) -> Any:
    if name == "app":
        from coral.cli.main import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
