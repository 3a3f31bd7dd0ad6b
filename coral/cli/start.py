"""``coral-node start``: start the node and run until Ctrl-C or SIGTERM.

The typer command in ``coral.cli.main`` and the fast path here both end in
``start_node``. The fast path exists for start-up time: typer and rich
together take about a tenth of a second to import, and a node should be
listening before then. ``parse_start_args`` reads the ordinary forms of the
start flags by hand; anything else (``--help``, a malformed or unknown flag,
a value it would have to guess about) returns None, and the caller hands the
command line to typer, which answers exactly as it always has.

This module imports neither typer nor rich; rich is imported only to print
the start-up banner to a terminal, after the node listens.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from coral import __version__
from coral.config import Config, ConfigError, load_config


@dataclass
class StartArgs:
    """The ``coral-node start`` flags as typer would have passed them."""

    data_dir: Path | None = None
    config: Path | None = None
    host: str | None = None
    grpc_port: int | None = None
    http_port: int | None = None
    bootstrap: list[str] | None = None
    public_address: list[str] | None = None
    log_level: str | None = None
    log_json: bool | None = None
    allowed_host: list[str] | None = None
    database_url: str | None = None
    #: coral-server style ``--section.key=value`` arguments, in order.
    extra: list[str] = field(default_factory=list)


_PATHS = {"--data-dir": "data_dir", "-d": "data_dir", "--config": "config", "-c": "config"}
_STRINGS = {"--host": "host", "--log-level": "log_level", "--database-url": "database_url"}
_INTS = {"--grpc-port": "grpc_port", "--http-port": "http_port"}
_LISTS = {
    "--bootstrap": "bootstrap",
    "-b": "bootstrap",
    "--public-address": "public_address",
    "--allowed-host": "allowed_host",
}
_FLAGS = {"--log-json": True, "--no-log-json": False}
_TAKES_VALUE = {**_PATHS, **_STRINGS, **_INTS, **_LISTS}


def parse_start_args(args: list[str]) -> StartArgs | None:
    """The flags after ``start``, or None when typer should read them instead.

    Only the plain forms are read here (``--flag value``, ``--flag=value``,
    ``-d value``, ``--log-json``, coral-server ``--section.key=value``); for
    everything else typer's own parsing, help and error messages apply.
    """
    parsed = StartArgs()
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        name, has_value, value = arg.partition("=")
        if name in _FLAGS and not has_value:
            parsed.log_json = _FLAGS[name]
            continue
        if name in _TAKES_VALUE:
            if has_value:
                if not name.startswith("--"):  # click reads -d=x as the path "=x"
                    return None
            elif rest:
                value = rest.pop(0)
            else:
                return None
            if not _store(parsed, _TAKES_VALUE[name], value):
                return None
            continue
        if arg.startswith("--") and has_value and "." in name:
            parsed.extra.append(arg)
            continue
        return None
    return parsed


def _store(parsed: StartArgs, attr: str, value: str) -> bool:
    """Set one flag's value as typer converts it; False when typer should judge it."""
    if not value or value.startswith("-"):
        return False
    if attr in _PATHS.values():
        setattr(parsed, attr, Path(value))
    elif attr in _INTS.values():
        try:
            setattr(parsed, attr, int(value))
        except ValueError:
            return False
    elif attr in _LISTS.values():
        current: list[str] | None = getattr(parsed, attr)
        setattr(parsed, attr, [*(current or []), value])
    else:
        setattr(parsed, attr, value)
    return True


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` as one plain line on stderr and exit with ``code``."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def coral_server_overrides(args: list[str]) -> list[str] | None:
    """coral-server style ``--section.key=value`` arguments; anything else is an error."""
    for arg in args:
        if not (arg.startswith("--") and "=" in arg and "." in arg.split("=", 1)[0]):
            fail(f"unknown argument {arg!r}", 2)
    return list(args) or None


def start_node(args: StartArgs) -> None:
    """Load the config from ``args``, start the node, run until a signal, stop.

    Exits 2 on a configuration error, 1 when the node cannot start.
    """
    from coral.node.eventloop import run as run_event_loop
    from coral.node.logs import configure_logging

    try:
        cfg = load_config(
            args.config,
            overrides={
                "data_dir": args.data_dir,
                "host": args.host,
                "grpc_port": args.grpc_port,
                "http_port": args.http_port,
                "bootstrap_peers": args.bootstrap or None,
                "public_addresses": args.public_address or None,
                "log_level": args.log_level,
                "log_json": args.log_json,
                "allowed_hosts": args.allowed_host or None,
                "database_url": args.database_url,
                "coral_server_overrides": coral_server_overrides(args.extra),
            },
        )
    except ConfigError as exc:
        fail(f"{exc}; fix it in config.toml, the CORAL_* environment or the flag", 2)
    configure_logging(cfg.log_level, cfg.log_json)
    try:
        run_event_loop(_run_node(cfg))
    except ConfigError as exc:  # e.g. the coral-server config.toml, read at start
        fail(str(exc), 2)
    except Exception as exc:
        fail(f"cannot start: {_start_failure(exc)}", 1)


async def _run_node(cfg: Config) -> None:
    """Start the node, print where it listens, run until a signal, stop.

    Start sits inside the same ``finally`` as stop: a start that fails part way has
    already rolled itself back, and the stop that follows closes nothing twice.
    """
    from coral.node import Node

    say = Banner()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    node = Node(cfg)
    try:
        ctx = await node.start()
        say("Coral node", style="bold", after=f" {__version__}")
        new = "  (new identity)" if node.created_identity else ""
        say(f"node id    {ctx.identity.did}{new}")
        say(f"data dir   {cfg.data_dir}")
        say(f"gRPC       {ctx.grpc_address}")
        say(f"HTTP       {ctx.http_address}")
        say(f"dashboard  {ctx.http_address}/")
        say("ready; press Ctrl-C to stop", style="green")
        sys.stdout.flush()
        await stop.wait()
        say("stopping...")
    finally:
        await node.stop()
    say("stopped cleanly")


class Banner:
    """Prints the start-up lines: plain text, styled through rich on a terminal.

    Off a terminal rich prints exactly the plain text, so it is not imported
    there; on one it is imported at the first line (the node already listens).
    """

    def __init__(self) -> None:
        self._styled: Callable[..., Any] | None = None
        self._terminal = _is_terminal()

    def __call__(self, text: str, style: str | None = None, after: str = "") -> None:
        """Print ``text`` (in ``style`` on a terminal) followed by ``after``, one line."""
        if not self._terminal:
            sys.stdout.write(f"{text}{after}\n")
            sys.stdout.flush()
            return
        if self._styled is None:
            from rich.console import Console
            from rich.text import Text

            console = Console(emoji=False, highlight=False)

            def styled(text: str, style: str | None, after: str) -> None:
                console.print(Text.assemble((text, style or ""), after), soft_wrap=True)

            self._styled = styled
        self._styled(text, style, after)


def _is_terminal() -> bool:
    """Whether rich would style output here (a TTY, or forced by its environment variables)."""
    if os.environ.get("TTY_COMPATIBLE") == "0":
        return False
    if os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE") == "1":
        return True
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _start_failure(exc: BaseException) -> str:
    """One line naming why a start failed and what to do about it."""
    from coral.node.preflight import StartError

    if isinstance(exc, StartError):
        return str(exc)
    if isinstance(exc, ImportError):
        missing = exc.name or str(exc)
        return (
            f"Python module {missing!r} is missing ({exc}); reinstall with `pip install -e .` "
            "and run `coral-node doctor`"
        )
    logging.getLogger("coral.node").debug("start failed", exc_info=exc)
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return f"{detail}; run `coral-node doctor`, or start with --log-level debug for details"
