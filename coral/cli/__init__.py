"""The ``coral-node`` command line: start, init, status, keys, agents, ledger, a2a, mcp, doctor."""

from coral.cli.main import app, main

__all__ = ["app", "main"]
