"""``coral-node ledger ...``: balances, payments, history, receipts, dev funding.

Agent operations sign each request with the agent's key, read from a key
file holding the hex Ed25519 seed (``--key``), so the node lets them touch
only that agent's account. ``issue`` (dev mode only) and reading any account
without ``--key`` use the operator's admin token from the data dir.
``verify-receipt`` works offline. ``--json`` prints machine-readable output.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from coral.config import ConfigError, load_config
from coral.ledger.receipts import Receipt, verify_receipt
from coral.protocol.errors import CoralError
from coral.protocol.identity import Identity

ledger_app = typer.Typer(
    help="Payments: balances, transfers, history, receipts.", no_args_is_help=True
)

out = Console(emoji=False, highlight=False)
# Errors print literally on one line: "[Errno 111]" or "[postgres]" are not markup.
err = Console(stderr=True, emoji=False, highlight=False, markup=False, soft_wrap=True)
T = TypeVar("T")

DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", "-d", help="Data directory of the running node.")
]
KeyOpt = Annotated[
    Path | None,
    typer.Option("--key", "-k", help="Agent key file (hex Ed25519 seed) that signs the request."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _node(data_dir: Path | None) -> tuple[dict[str, Any], Path]:
    """The running node's runtime info and its keys directory; exits 1 when none runs."""
    try:
        cfg = load_config(None, overrides={"data_dir": data_dir})
        runtime: dict[str, Any] = json.loads(cfg.runtime_file.read_text())
    except (ConfigError, FileNotFoundError, json.JSONDecodeError) as exc:
        err.print(f"no running node found ({exc}); start it with coral-node start")
        raise typer.Exit(1) from None
    return runtime, cfg.keys_dir


def _identity(key: Path) -> Identity:
    try:
        return Identity.from_seed(bytes.fromhex(key.read_text().strip()))
    except (OSError, ValueError) as exc:
        err.print(f"cannot read agent key {key}: {exc}")
        raise typer.Exit(2) from None


def _agent_call(data_dir: Path | None, key: Path, call: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``call(LedgerClient)`` for the agent in ``key``; node refusals exit 1."""
    from coral_sdk.client import CoralApiError, CoralClient
    from coral_sdk.ledger import LedgerClient

    runtime, _ = _node(data_dir)
    identity = _identity(key)

    async def run() -> T:
        async with CoralClient(runtime["http_address"], identity) as client:
            client.node_id = runtime["node_id"]
            return await call(LedgerClient(client))

    try:
        return asyncio.run(run())
    except CoralApiError as exc:
        err.print(f"refused: {exc.reason}: {exc.detail}")
        raise typer.Exit(1) from None
    except OSError as exc:
        err.print(f"node not reachable: {exc}")
        raise typer.Exit(1) from None


def _admin_call(data_dir: Path | None, method: str, path: str, body: Any = None) -> Any:
    runtime, keys_dir = _node(data_dir)
    token = (keys_dir / "admin.token").read_text().strip()
    request = urllib.request.Request(
        runtime["http_address"] + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        problem = json.loads(exc.read() or b"{}")
        err.print(f"refused: {problem.get('reason', exc.code)}: {problem.get('detail', '')}")
        raise typer.Exit(1) from None
    except (urllib.error.URLError, OSError) as exc:
        err.print(f"node not reachable: {exc}")
        raise typer.Exit(1) from None


def _print_json(data: Any) -> None:
    out.print_json(json.dumps(data))


def _print_transfer(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(data)
        return
    transfer = data["transfer"]
    table = Table(title="duplicate (retry)" if data.get("duplicate") else "transfer")
    table.add_column("field")
    table.add_column("value")
    for name in ("id", "debit_account", "credit_account", "amount", "memo"):
        table.add_row(name, str(transfer[name]))
    table.add_row("receipt signed by", (data.get("receipt") or {}).get("node", "-"))
    out.print(table)


@ledger_app.command()
def balance(
    account: Annotated[str | None, typer.Argument(help="Account id (default: the key's).")] = None,
    key: KeyOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show an account's balances (your own with --key; any with the admin token)."""
    if key is not None:
        data = _agent_call(data_dir, key, lambda ledger: ledger.balance(account))
    elif account is not None:
        data = _admin_call(data_dir, "GET", f"/v1/ledger/accounts/{account}")
    else:
        err.print("give an account id, or --key for your own account")
        raise typer.Exit(2)
    if as_json:
        _print_json(data)
        return
    table = Table(title=data["id"])
    for name in ("balance", "available", "debits_pending", "credits_pending", "kind"):
        table.add_column(name)
    table.add_row(
        *(
            str(data[n])
            for n in ("balance", "available", "debits_pending", "credits_pending", "kind")
        )
    )
    out.print(table)


@ledger_app.command()
def transfer(
    to: Annotated[str, typer.Option("--to", help="Account (agent did) to pay.")],
    amount: Annotated[int, typer.Option("--amount", help="Amount in minor units.")],
    key: KeyOpt = None,
    memo: Annotated[str, typer.Option("--memo")] = "",
    transfer_id: Annotated[
        str | None, typer.Option("--transfer-id", help="Idempotency key; reuse it to retry.")
    ] = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Pay from your account (--key) to another; prints the transfer and its receipt."""
    if key is None:
        err.print("--key is required: only an account's owner pays from it")
        raise typer.Exit(2)
    from coral_sdk.ledger import new_transfer_id

    chosen = transfer_id or new_transfer_id()
    payment = _agent_call(
        data_dir,
        key,
        lambda ledger: ledger.transfer(to=to, amount=amount, memo=memo, transfer_id=chosen),
    )
    data = {
        "transfer": payment.transfer,
        "receipt": payment.receipt.to_dict() if payment.receipt else None,
        "duplicate": payment.duplicate,
    }
    _print_transfer(data, as_json)


@ledger_app.command()
def history(
    account: Annotated[str | None, typer.Argument(help="Account id (default: the key's).")] = None,
    key: KeyOpt = None,
    after: Annotated[int, typer.Option("--after", help="Sequence cursor.")] = 0,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List an account's transfers, oldest first, from the cursor ``--after``."""
    if key is not None:
        data = _agent_call(
            data_dir, key, lambda ledger: ledger.history(account, after=after, limit=limit)
        )
    elif account is not None:
        path = f"/v1/ledger/accounts/{account}/history?after={after}&limit={limit}"
        data = _admin_call(data_dir, "GET", path)
    else:
        err.print("give an account id, or --key for your own account")
        raise typer.Exit(2)
    if as_json:
        _print_json(data)
        return
    table = Table(title=f"next cursor: {data['next_after']}")
    for name in ("seq", "id", "from", "to", "amount", "memo"):
        table.add_column(name)
    for entry in data["entries"]:
        t = entry["transfer"]
        table.add_row(
            str(entry["seq"]),
            t["id"],
            t["debit_account"],
            t["credit_account"],
            str(t["amount"]),
            t["memo"],
        )
    out.print(table)


@ledger_app.command("verify-receipt")
def verify_receipt_command(
    receipt_file: Annotated[Path, typer.Argument(help="Receipt JSON file ('-' for stdin).")],
    node_did: Annotated[
        str | None, typer.Option("--node", help="Signing node's did (default: the running node).")
    ] = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a receipt's signature offline; exits 1 when it is not valid."""
    text = typer.get_text_stream("stdin").read() if str(receipt_file) == "-" else None
    try:
        raw = json.loads(text if text is not None else receipt_file.read_text())
        if isinstance(raw, dict) and isinstance(raw.get("receipt"), dict):
            raw = raw["receipt"]  # accept a whole transfer answer too
        receipt = Receipt.from_dict(raw if isinstance(raw, dict) else {})
    except (OSError, ValueError, CoralError) as exc:
        err.print(f"not a receipt: {exc}")
        raise typer.Exit(2) from None
    expected = node_did or _node(data_dir)[0]["node_id"]
    try:
        verify_receipt(receipt, expected)
        result = {"valid": True, "reason": "", "node": expected}
    except CoralError as exc:
        result = {"valid": False, "reason": exc.reason, "node": expected}
    if as_json:
        _print_json(result)
    elif result["valid"]:
        out.print(
            f"valid: {receipt.amount} from {receipt.debit_account} to "
            f"{receipt.credit_account}, signed by {expected}"
        )
    else:
        out.print(f"NOT valid: {result['reason']}")
    if not result["valid"]:
        raise typer.Exit(1)


@ledger_app.command()
def issue(
    account: Annotated[str, typer.Argument(help="Account (agent did) to fund.")],
    amount: Annotated[int, typer.Argument(help="Amount in minor units.")],
    transfer_id: Annotated[str | None, typer.Option("--transfer-id")] = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fund an account from the operator account (dev mode only; admin token)."""
    body: dict[str, Any] = {"account": account, "amount": amount}
    if transfer_id:
        body["transfer_id"] = transfer_id
    _print_transfer(_admin_call(data_dir, "POST", "/v1/admin/ledger/issue", body), as_json)
