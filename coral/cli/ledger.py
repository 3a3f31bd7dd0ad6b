"""``coral-node ledger ...``: balances, payments, history, receipts, dev funding.

Agent operations sign each request with the agent's key, read from a key
file holding the hex Ed25519 seed (``--key``), so the node lets them touch
only that agent's account. ``issue`` (dev mode only) and reading any account
without ``--key`` use the operator's admin token from the data dir.
``verify-receipt`` works offline. ``--json`` prints machine-readable output.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from coral.cli.client import RunningNode, new_transfer_id, node_errors, path_segment
from coral.ledger.receipts import Receipt, verify_receipt
from coral.protocol.errors import CoralError
from coral.protocol.identity import Identity

ledger_app = typer.Typer(
    help="Payments: balances, transfers, history, receipts.", no_args_is_help=True
)

out = Console(emoji=False, highlight=False)
# Errors print literally on one line: "[Errno 111]" or "[postgres]" are not markup.
err = Console(stderr=True, emoji=False, highlight=False, markup=False, soft_wrap=True)

DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", "-d", help="Data directory of the running node.")
]
KeyOpt = Annotated[
    Path | None,
    typer.Option("--key", "-k", help="Agent key file (hex Ed25519 seed) that signs the request."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _identity(key: Path) -> Identity:
    try:
        return Identity.from_seed(bytes.fromhex(key.read_text().strip()))
    except (OSError, ValueError) as exc:
        err.print(f"cannot read agent key {key}: {exc}")
        raise typer.Exit(2) from None


def _agent_call(
    data_dir: Path | None,
    key: Path,
    method: str,
    path: Callable[[Identity], str],
    **kwargs: Any,
) -> dict[str, Any]:
    """``method path(agent)`` signed by the agent whose seed is in ``key``; refusals exit 1."""
    with node_errors():
        running = RunningNode.from_data_dir(data_dir)
    identity = _identity(key)
    with node_errors(), running.client(identity=identity) as node:
        data: dict[str, Any] = node.request(method, path(identity), auth="agent", **kwargs)
    return data


def _admin_call(data_dir: Path | None, method: str, path: str, **kwargs: Any) -> Any:
    """``method path`` with the operator's admin token; node refusals exit 1."""
    with node_errors(), RunningNode.from_data_dir(data_dir).client(admin=True) as node:
        return node.request(method, path, auth="admin", **kwargs)


def _account_path(account: str, suffix: str = "") -> str:
    return "/v1/ledger/accounts/" + path_segment(account) + suffix


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
        data = _agent_call(data_dir, key, "GET", lambda agent: _account_path(account or agent.did))
    elif account is not None:
        data = _admin_call(data_dir, "GET", _account_path(account))
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
    body = {
        "transfer_id": transfer_id or new_transfer_id(),
        "to": to,
        "amount": amount,
        "memo": memo,
    }
    answer = _agent_call(data_dir, key, "POST", lambda _: "/v1/ledger/transfers", body=body)
    receipt = answer.get("receipt")
    data = {
        "transfer": answer["transfer"],
        "receipt": Receipt.from_dict(receipt).to_dict() if isinstance(receipt, dict) else None,
        "duplicate": bool(answer.get("duplicate")),
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
    query = {"after": after, "limit": limit}
    if key is not None:
        data = _agent_call(
            data_dir,
            key,
            "GET",
            lambda agent: _account_path(account or agent.did, "/history"),
            query=query,
        )
    elif account is not None:
        data = _admin_call(data_dir, "GET", _account_path(account, "/history"), query=query)
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
    if node_did is None:
        with node_errors():
            node_did = RunningNode.from_data_dir(data_dir).node_id
    expected = node_did
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
    _print_transfer(_admin_call(data_dir, "POST", "/v1/admin/ledger/issue", body=body), as_json)
