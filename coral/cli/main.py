"""coral-node: run and inspect a Coral node."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from coral import __version__
from coral.agents.keyfile import load_or_create_identity
from coral.cli.client import NodeClient, RunningNode, node_errors, tls_verify
from coral.cli.interop import a2a_app, mcp_app
from coral.cli.ledger import ledger_app
from coral.cli.start import StartArgs, start_node
from coral.config import Config, ConfigError, config_template, load_config
from coral.node.keys import load_or_create_token

app = typer.Typer(
    name="coral-node",
    help=(
        "Run and inspect a Coral Protocol node.\n\n"
        "Quick start: coral-node start   (then open the dashboard URL it prints)\n\n"
        "Exit codes: 0 ok, 1 runtime failure or node unreachable, 2 usage or config error."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
keys_app = typer.Typer(help="Show or rotate the node's key.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(mcp_app, name="mcp")
app.add_typer(a2a_app, name="a2a")
app.add_typer(ledger_app, name="ledger")

out = Console(emoji=False, highlight=False)
# Errors print literally on one line: "[Errno 111]" or "[postgres]" are not markup.
err = Console(stderr=True, emoji=False, highlight=False, markup=False, soft_wrap=True)

DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", "-d", help="Data directory (default: platform data dir)."),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Path to a TOML config file.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _version(value: bool) -> None:
    if value:
        out.print(f"coral-node {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Run and inspect a Coral Protocol node."""


def _config(config: Path | None, **flags: Any) -> Config:
    try:
        return load_config(config, overrides=flags)
    except ConfigError as exc:
        _fail(f"{exc}; fix it in config.toml, the CORAL_* environment or the flag", 2)


@app.command()
def init(
    data_dir: DataDirOpt = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing config file.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a commented config file and generate the node key and admin token.

    Examples: coral-node init --data-dir ./node-a ; coral-node init --json
    """
    cfg = _config(None, data_dir=data_dir)
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    path = cfg.data_dir / "config.toml"
    wrote = False
    if path.exists() and not force:
        err.print(f"{path} exists; keeping it (use --force to overwrite)", style="yellow")
    else:
        path.write_text(config_template(cfg.data_dir))
        wrote = True
    identity, created = load_or_create_identity(cfg.keys_dir / "node.key")
    load_or_create_token(cfg.keys_dir / "admin.token")
    if as_json:
        info = {
            "node_id": identity.did,
            "new_identity": created,
            "config_file": str(path),
            "config_written": wrote,
            "admin_token_file": str(cfg.keys_dir / "admin.token"),
        }
        out.print_json(json.dumps(info))
        return
    if wrote:
        out.print(f"wrote {path}")
    out.print(f"node id: {identity.did}" + (" (new)" if created else ""))
    out.print(f"admin token: {cfg.keys_dir / 'admin.token'}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def start(
    ctx: typer.Context,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind.")] = None,
    grpc_port: Annotated[int | None, typer.Option(help="gRPC port (0 = any free port).")] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP port (0 = any free port).")] = None,
    bootstrap: Annotated[
        list[str] | None, typer.Option("--bootstrap", "-b", help="Bootstrap peer host:grpc_port.")
    ] = None,
    public_address: Annotated[
        list[str] | None,
        typer.Option(
            "--public-address",
            help="A gRPC host:port other nodes reach this node at: each replica's, or one"
            " load balancer's (repeatable).",
        ),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
    log_json: Annotated[bool | None, typer.Option("--log-json/--no-log-json")] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="Another name browsers may use for the dashboard and MCP (repeatable).",
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help='"sqlite" or postgresql://... (every store there; prefer CORAL_DATABASE_URL'
            " for URLs with a password)."
        ),
    ] = None,
) -> None:
    """Start the node and run until Ctrl-C or SIGTERM.

    Example: coral-node start --data-dir ./node-a --grpc-port 7420 --http-port 7421

    coral-server's ``--section.key=value`` arguments override keys of the
    coral-server config.toml named by CONFIG_FILE_PATH (see docs/interop.md).
    """
    # A plain start command line never gets here: the entry point (coral/cli/__init__.py)
    # starts the node without importing typer; this serves --help and what it leaves.
    start_node(
        StartArgs(
            data_dir=data_dir,
            config=config,
            host=host,
            grpc_port=grpc_port,
            http_port=http_port,
            bootstrap=bootstrap,
            public_address=public_address,
            log_level=log_level,
            log_json=log_json,
            allowed_host=allowed_host,
            database_url=database_url,
            extra=list(ctx.args),
        )
    )


def _fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` as one plain line on stderr and exit with ``code``."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    raise typer.Exit(code)


def _runtime(cfg: Config) -> dict[str, Any] | None:
    try:
        return dict(json.loads(cfg.runtime_file.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


#: Seconds status, agents and peers wait for the node.
READ_TIMEOUT_S = 5.0


def _node_client(cfg: Config, url: str | None) -> NodeClient:
    """A client for ``--url``, else for the node started from the data dir.

    Raises:
        NoRunningNode: no ``--url`` and no node runs from the data dir.
    """
    if url is not None:
        return NodeClient(url, timeout_s=READ_TIMEOUT_S, verify=tls_verify(cfg))
    return RunningNode.find(cfg, or_url=True).client(timeout_s=READ_TIMEOUT_S)


@app.command()
def status(
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    url: Annotated[
        str | None, typer.Option(help="Node HTTP URL (default: from the data dir).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask a running node for its identity and health. Exit 1 if it is not reachable.

    Example: coral-node status --data-dir ./node-a --json
    """
    cfg = _config(config, data_dir=data_dir)
    with node_errors(), _node_client(cfg, url) as node:
        health = node.get("/healthz")
        info = node.get("/v1/node")
    result = {"url": node.base_url, "health": health.get("status"), **info}
    if as_json:
        out.print_json(json.dumps(result))
        return
    _print_fields(
        result, ("node_id", "health", "version", "protocol_version", "grpc_address", "http_address")
    )
    out.print(f"dashboard         {node.base_url}/")


def _print_fields(values: dict[str, Any], keys: tuple[str, ...]) -> None:
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key in keys:
        table.add_row(key, str(values.get(key)))
    out.print(table)


@app.command()
def agents(
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    url: Annotated[
        str | None, typer.Option(help="Node HTTP URL (default: from the data dir).")
    ] = None,
    all_nodes: Annotated[
        bool, typer.Option("--all", help="Include agents homed on other nodes.")
    ] = False,
    capability: Annotated[
        str | None, typer.Option(help="Only agents with this capability.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Only agents with this name.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List agents in the node's directory.

    Examples: coral-node agents --all ; coral-node agents --capability sudoku --json
    """
    cfg = _config(config, data_dir=data_dir)
    query = {"all": "true" if all_nodes else None, "capability": capability, "name": name}
    with node_errors(), _node_client(cfg, url) as node:
        records = node.get("/v1/agents", query={k: v for k, v in query.items() if v})["agents"]
    if as_json:
        out.print_json(json.dumps(records))
        return
    from rich.table import Table

    table = Table("name", "did", "home node", "capabilities", "version")
    for r in records:
        m = r["manifest"]
        table.add_row(
            m["name"], r["agent"], r["home_node"][-12:], ", ".join(m["capabilities"]), m["version"]
        )
    out.print(table)
    out.print(f"{len(records)} agent(s)")


@app.command()
def peers(
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    url: Annotated[
        str | None, typer.Option(help="Node HTTP URL (default: from the data dir).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the other nodes this node knows (from signed peer records and gossip).

    Examples: coral-node peers ; coral-node peers --url http://127.0.0.1:7421 --json
    """
    cfg = _config(config, data_dir=data_dir)
    with node_errors(), _node_client(cfg, url) as node:
        data = node.get("/v1/peers")
    if as_json:
        out.print_json(json.dumps(data))
        return
    from rich.table import Table

    table = Table("node id", "gRPC", "HTTP", "active", "banned")
    for peer in data["peers"]:
        addresses = peer["record"]["addresses"]
        table.add_row(
            peer["node_id"],
            addresses.get("grpc") or "-",
            addresses.get("http") or "-",
            "yes" if peer["active"] else "no",
            "yes" if peer["banned"] else "no",
        )
    out.print(table)
    out.print(f"{len(data['peers'])} peer(s)")


@keys_app.command("show")
def keys_show(
    data_dir: DataDirOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False
) -> None:
    """Print the node's did:key and public key (never the private key).

    Example: coral-node keys show --data-dir ./node-a
    """
    cfg = _config(config, data_dir=data_dir)
    path = cfg.keys_dir / "node.key"
    if not path.exists():
        err.print(f"no node key at {path}; run `coral-node init` or `coral-node start` first")
        raise typer.Exit(1)
    identity, _ = load_or_create_identity(path)
    info = {
        "node_id": identity.did,
        "public_key_hex": identity.public_key.hex(),
        "key_file": str(path),
    }
    if as_json:
        out.print_json(json.dumps(info))
    else:
        _print_fields(info, tuple(info))


@keys_app.command("rotate")
def keys_rotate(
    data_dir: DataDirOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False
) -> None:
    """Replace the node key with a new one, keeping a hand-over signed by both keys.

    Run it while the node is stopped. On its next start the node publishes the
    hand-over in its peer record; peers retire the old node id and refuse it
    afterwards. The old seed is kept under keys/retired/ (0600). Agents homed on
    this node re-register to be countersigned by the new key.

    Example: coral-node keys rotate --data-dir ./node-a
    """
    from coral.node.keys import rotate_node_key
    from coral.protocol.message import now_ms

    cfg = _config(config, data_dir=data_dir)
    if not (cfg.keys_dir / "node.key").exists():
        _fail(f"no node key at {cfg.keys_dir / 'node.key'}; run `coral-node init` first", 1)
    runtime = _runtime(cfg)
    if runtime is not None and _pid_alive(int(runtime.get("pid", 0))):
        _fail(f"the node is running (pid {runtime['pid']}); stop it, then rotate its key", 1)
    handover = rotate_node_key(cfg.keys_dir, now_ms())
    info = {"old_node_id": handover.old_did, "new_node_id": handover.new_did}
    if as_json:
        out.print_json(json.dumps(info))
    else:
        _print_fields(info, tuple(info))


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@app.command()
def doctor(
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check this machine and configuration; say what is wrong and how to fix it.

    Checks Python, the data dir, key file permissions, the config, ports (or the
    running node's health), SQLite WAL, TLS files, PostgreSQL, that every
    subsystem's imports load, and which optional extras are installed. Starts
    nothing. Exit 1 when a check fails, i.e. the node could not start or work
    as configured (warnings alone exit 0).

    Examples: coral-node doctor --data-dir ./node-a ; coral-node doctor --json
    """
    from rich.table import Table
    from rich.text import Text

    from coral.cli.doctor import run_checks

    checks = run_checks(config, {"data_dir": data_dir})
    failed = [c for c in checks if c.status == "fail"]
    if as_json:
        out.print_json(json.dumps({"ok": not failed, "checks": [c.as_dict() for c in checks]}))
    else:
        styles = {"ok": "green", "warn": "yellow", "fail": "bold red"}
        table = Table(title="coral-node doctor")
        table.add_column("check")
        table.add_column("status")
        table.add_column("detail", overflow="fold")
        table.add_column("how to fix", overflow="fold")
        for check in checks:
            # Text, not markup: fixes such as pip install 'coral-node[postgres]' print literally.
            table.add_row(
                Text(check.name),
                Text(check.status, style=styles[check.status]),
                Text(check.detail),
                Text(check.fix),
            )
        out.print(table)
        warned = sum(c.status == "warn" for c in checks)
        summary = f"{len(failed)} failed, {warned} warning(s), {len(checks)} checks"
        out.print(summary, style="bold red" if failed else "green")
    if failed:
        raise typer.Exit(1)


def main() -> None:
    """Run the typer app on ``sys.argv`` (the entry point tries its start fast path first)."""
    app()


if __name__ == "__main__":
    main()
