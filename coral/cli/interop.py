"""``coral-node mcp ...`` and ``coral-node a2a ...``: create node-held agents on a running node.

Both talk to the running node's admin routes with the admin token from the
data dir, so the node (which holds the keys) does the work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from coral.cli.client import RunningNode, node_errors

mcp_app = typer.Typer(
    help="MCP agents hosted by this node (coral-server compatible).", no_args_is_help=True
)
a2a_app = typer.Typer(help="External A2A agents that join Coral threads.", no_args_is_help=True)

out = Console(emoji=False, highlight=False)
# Errors print literally on one line: "[Errno 111]" or "[postgres]" are not markup.
err = Console(stderr=True, emoji=False, highlight=False, markup=False, soft_wrap=True)

DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", "-d", help="Data directory of the running node."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def admin_post(data_dir: Path | None, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST ``body`` to the running node's admin route ``path``; exits 1 with the reason."""
    with node_errors(), RunningNode.from_data_dir(data_dir).client(admin=True) as node:
        result: dict[str, Any] = node.post(path, body, auth="admin")
    return result


@mcp_app.command("create")
def create_mcp_agent(
    name: Annotated[str, typer.Argument(help="Agent name (lowercase, digits, dashes).")],
    description: Annotated[str, typer.Option(help="What the agent does.")] = "",
    capability: Annotated[
        list[str] | None, typer.Option("--capability", help="A capability (repeatable).")
    ] = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an MCP agent; prints its connection URLs (the secret is shown only now).

    Example: coral-node mcp create planner --description "plans work"
    """
    body = {"name": name, "description": description, "capabilities": capability or []}
    result = admin_post(data_dir, "/v1/admin/mcp-agents", body)
    if as_json:
        out.print_json(json.dumps(result))
        return
    out.print(f"agent            {result['name']}  ({result['did']})")
    out.print(f"streamable HTTP  {result['urls']['streamable_http']}")
    out.print(f"SSE              {result['urls']['sse']}")
    out.print("keep these URLs secret: they carry the agent's credential")


@a2a_app.command("add")
def add_a2a_agent(
    card_url: Annotated[str, typer.Argument(help="URL of the external agent's card (or base).")],
    name: Annotated[str | None, typer.Option(help="Coral name (default: from the card).")] = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a proxy so Coral threads can include an external A2A agent by name."""
    body: dict[str, Any] = {"card_url": card_url}
    if name:
        body["name"] = name
    result = admin_post(data_dir, "/v1/admin/a2a-agents", body)
    if as_json:
        out.print_json(json.dumps(result))
        return
    out.print(f"agent  {result['name']}  ({result['did']}) -> {result['card_url']}")
