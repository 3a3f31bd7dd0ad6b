"""The payment ledger in a real node process, over HTTP and gRPC.

Funding by the operator, payments with receipts checked offline, idempotent
retries, two-phase and hash-locked escrow, every kind of bad input refused
with its typed reason and no change, contract-net awards paid through
escrow, and the same API on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

from coral.api.grpc.ledger import receipt_to_proto
from coral.coordination.model import HistoryPage
from coral.ledger.model import AMOUNT_MAX
from coral.protocol.agent import AgentManifest
from coral.protocol.errors import SignatureError
from coral.protocol.identity import Identity
from coral.protocol.message import now_ms
from coral.protocol.request_auth import sign_request
from coral.v1 import ledger_pb2, ledger_pb2_grpc
from coral_sdk import CoralApiError, CoralClient
from coral_sdk.ledger import LedgerClient
from tests.support.nodeproc import NodeProcess


def admin_token(node: NodeProcess) -> str:
    return (node.data_dir / "keys" / "admin.token").read_text().strip()


async def agents(node: NodeProcess, *names: str) -> list[CoralClient]:
    clients = []
    for name in names:
        client = CoralClient(node.http, Identity.generate())
        await client.register(AgentManifest(name=name))
        await client.node_info()
        clients.append(client)
    return clients


async def issue(
    client: CoralClient, node: NodeProcess, account: str, amount: int, token: str | None = None
) -> Any:
    """Operator funding over HTTP with the admin token."""
    session = client._http()
    async with session.post(
        node.http + "/v1/admin/ledger/issue",
        json={"account": account, "amount": amount},
        headers={"Authorization": f"Bearer {token or admin_token(node)}"},
    ) as resp:
        body = await resp.json(content_type=None)
        if resp.status >= 400:
            raise CoralApiError(resp.status, body["reason"], body["detail"])
        return body


async def balance_of(client: CoralClient) -> int:
    return (await LedgerClient(client).balance()).balance


async def refused(call: Any) -> tuple[int, str]:
    with pytest.raises(CoralApiError) as info:
        await call
    return info.value.status, info.value.reason


async def post_json(client: CoralClient, path: str, body: dict[str, Any]) -> Any:
    return await client._request("POST", path, body=json.dumps(body).encode())


async def test_fund_pay_retry_and_verify_receipts_offline(node_factory):
    node = node_factory("node")
    alice, bob = await agents(node, "alice", "bob")
    ledger = LedgerClient(alice)
    try:
        funded = await issue(alice, node, alice.did, 1_000)
        assert funded["transfer"]["credit_account"] == alice.did
        paid = await ledger.transfer(to=bob.did, amount=250, memo="report", transfer_id="pay-1")
        assert not paid.duplicate and paid.receipt is not None
        retry = await ledger.transfer(to=bob.did, amount=250, memo="report", transfer_id="pay-1")
        assert retry.duplicate and retry.transfer == paid.transfer
        assert await balance_of(alice) == 750 and await balance_of(bob) == 250

        # Offline: only the node's did is needed, and any edit breaks the signature.
        ledger.verify_receipt(paid.receipt, node.node_id)
        fetched = await LedgerClient(bob).receipt("pay-1")
        assert fetched == paid.receipt
        forged = dataclasses.replace(paid.receipt, amount=2_500)
        with pytest.raises(SignatureError):
            ledger.verify_receipt(forged, node.node_id)
        with pytest.raises(SignatureError):
            ledger.verify_receipt(paid.receipt, Identity.generate().did)
        check = await post_json(alice, "/v1/ledger/receipts/verify", {"receipt": forged.to_dict()})
        assert check == {"valid": False, "reason": "bad_signature"}
        check = await post_json(
            alice, "/v1/ledger/receipts/verify", {"receipt": paid.receipt.to_dict()}
        )
        assert check["valid"] is True

        first = await ledger.history(limit=1)
        rest = await ledger.history(after=first.next_after)
        ids = [e.transfer.id for e in first.entries + rest.entries]
        assert ids == [funded["transfer"]["id"], "pay-1"]

        async with alice._http().get(node.http + "/metrics") as resp:
            metrics = await resp.text()
        assert 'coral_ledger_transfers_total{outcome="posted"} 1.0' in metrics
        assert 'coral_ledger_transfers_total{outcome="duplicate"} 1.0' in metrics
        assert 'coral_ledger_transfers_total{outcome="issued"} 1.0' in metrics
        assert "coral_ledger_escrow_held 0.0" in metrics
    finally:
        await alice.close()
        await bob.close()


async def test_bad_inputs_are_refused_with_typed_reasons_and_change_nothing(node_factory):
    node = node_factory("node")
    alice, bob, mallory = await agents(node, "alice", "bob", "mallory")
    la, lb, lm = LedgerClient(alice), LedgerClient(bob), LedgerClient(mallory)
    try:
        await issue(alice, node, alice.did, 1_000)
        await lb.balance()  # opens bob's account
        hold = await la.reserve(to=bob.did, amount=100, transfer_id="hold-1")
        voided = await la.reserve(to=bob.did, amount=50, transfer_id="hold-2")
        await la.void(voided.id, transfer_id="hold-2-void")
        preimage = os.urandom(32)
        locked = await la.reserve(
            to=bob.did,
            amount=70,
            timeout_ms=60_000,
            condition=hashlib.sha256(preimage).hexdigest(),
            transfer_id="lock-1",
        )
        short = await la.reserve(
            to=bob.did,
            amount=30,
            timeout_ms=1_000,
            condition=hashlib.sha256(preimage).hexdigest(),
            transfer_id="lock-2",
        )
        before = (await la.balance(), await lb.balance())

        def pay(amount: Any, **extra: Any) -> Any:
            body = {"transfer_id": "bad", "to": bob.did, "amount": amount, **extra}
            return post_json(alice, "/v1/ledger/transfers", body)

        cases = [
            (pay(-5), (400, "amount_must_be_positive")),
            (pay(0), (400, "amount_must_be_positive")),
            (pay(AMOUNT_MAX + 1), (400, "amount_overflow")),
            (pay("12"), (400, "invalid_request")),
            (pay(1.5), (400, "invalid_request")),
            (pay(10, transfer_id=""), (400, "transfer_id_required")),
            (pay(10, transfer_id="award:x"), (400, "invalid_transfer_id")),
            (pay(10, to="no-such-account"), (404, "unknown_account")),
            (pay(10, to=alice.did), (400, "accounts_must_differ")),
            (pay(5_000), (409, "exceeds_credits")),
            (pay(250, transfer_id="hold-1"), (409, "exists_with_different_fields")),
            (lm.transfer(to=mallory.did, amount=1), (400, "accounts_must_differ")),
            (
                post_json(
                    mallory,
                    "/v1/ledger/transfers",
                    {
                        "transfer_id": "steal",
                        "from": alice.did,
                        "to": mallory.did,
                        "amount": 10,
                    },
                ),
                (403, "not_account_owner"),
            ),
            (lm.balance(alice.did), (403, "not_account_owner")),
            (lm.history(alice.did), (403, "not_account_owner")),
            (lm.receipt(hold.id), (403, "not_account_owner")),
            (lm.post(hold.id), (403, "not_account_owner")),
            (lb.void(hold.id), (403, "not_account_owner")),
            (la.post(hold.id, amount=101), (409, "exceeds_pending_amount")),
            (la.post(voided.id), (409, "pending_already_resolved")),
            (la.post("no-such-hold"), (404, "pending_not_found")),
            (la.post(locked.id), (400, "fulfillment_required")),
            (lb.fulfil(locked.id, os.urandom(32)), (403, "condition_not_met")),
            (lm.fulfil(locked.id, preimage), (403, "not_account_owner")),
            (
                la.reserve(to=bob.did, amount=1, timeout_ms=9, condition="ab"),
                (400, "invalid_condition"),
            ),
            (la.receipt(hold.id), (409, "transfer_not_posted")),
            (issue(alice, node, "no-such-account", 5), (404, "unknown_account")),
        ]
        for call, expected in cases:
            assert await refused(call) == expected
        # The expiry sweep (a background job) returns the short lock's funds once its
        # 1 s timeout has passed: poll for that outcome, with a generous hang guard.
        async with asyncio.timeout(60):
            while (await lb.balance()).credits_pending != before[1].credits_pending - 30:
                await asyncio.sleep(0.1)
        # Expired (and swept): fulfilling it now is a conflict, nothing paid.
        status, reason = await refused(lb.fulfil(short.id, preimage))
        assert status == 409 and reason in {"pending_expired", "pending_already_resolved"}
        # Unsigned and wrongly signed calls never reach the ledger.
        assert (
            await refused(alice._request("GET", f"/v1/ledger/accounts/{alice.did}", signed=False))
        )[0] == 401
        assert await refused(issue(alice, node, alice.did, 5, token="wrong")) == (
            401,
            "bad_admin_token",
        )

        after_alice, after_bob = await la.balance(), await lb.balance()
        assert after_bob == dataclasses.replace(
            before[1], credits_pending=before[1].credits_pending - 30
        )
        assert after_alice.balance == before[0].balance == 1_000
        assert after_alice.debits_pending == before[0].debits_pending - 30

        # The good paths still work after all of that.
        posted = await la.post(hold.id, amount=60, transfer_id="hold-1-post")
        assert posted.receipt is not None and posted.receipt.amount == 60
        fulfilled = await lb.fulfil(locked.id, preimage, transfer_id="lock-1-fulfil")
        assert fulfilled.transfer.amount == 70
        assert await balance_of(alice) == 870 and await balance_of(bob) == 130
    finally:
        for client in (alice, bob, mallory):
            await client.close()


async def test_issuing_funds_needs_dev_mode(node_factory):
    node = node_factory("prod", CORAL_DEV_MODE="false")
    (alice,) = await agents(node, "alice")
    try:
        assert await refused(issue(alice, node, alice.did, 5)) == (403, "dev_mode_only")
        assert await balance_of(alice) == 0
    finally:
        await alice.close()


class GrpcLedgerAgent:
    """An agent that pays over gRPC only, signing each call in ``coral-auth``."""

    def __init__(self, channel: grpc.aio.Channel, client: CoralClient) -> None:
        self.identity = client.identity
        self.stub = ledger_pb2_grpc.LedgerServiceStub(channel)

    def auth(self, method: str, request: Any) -> tuple[tuple[str, str]]:
        value = sign_request(
            self.identity,
            "RPC",
            f"/coral.v1.LedgerService/{method}",
            request.SerializeToString(),
            now_ms(),
        )
        return (("coral-auth", value),)

    async def call(self, method: str, request: Any) -> Any:
        return await getattr(self.stub, method)(request, metadata=self.auth(method, request))


async def test_grpc_pays_escrows_and_maps_errors(node_factory):
    node = node_factory("node")
    alice, bob = await agents(node, "alice", "bob")
    try:
        async with grpc.aio.insecure_channel(node.grpc) as channel:
            ga, gb = GrpcLedgerAgent(channel, alice), GrpcLedgerAgent(channel, bob)
            admin = (("authorization", f"Bearer {admin_token(node)}"),)
            issued = await ga.stub.Issue(
                ledger_pb2.LedgerIssueRequest(account=alice.did, amount=500), metadata=admin
            )
            assert issued.receipt.amount == 500
            request = ledger_pb2.LedgerTransferRequest(
                transfer_id="g-1", to_account=bob.did, amount=120, memo="grpc"
            )
            paid = await ga.call("Transfer", request)
            again = await ga.call("Transfer", request)
            assert not paid.duplicate and again.duplicate
            assert again.transfer == paid.transfer
            check = await ga.stub.VerifyReceipt(
                ledger_pb2.VerifyReceiptRequest(receipt=paid.receipt)
            )
            assert check.valid
            forged = ledger_pb2.LedgerReceipt()
            forged.CopyFrom(paid.receipt)
            forged.credit_account = alice.did
            check = await ga.stub.VerifyReceipt(ledger_pb2.VerifyReceiptRequest(receipt=forged))
            assert (check.valid, check.reason) == (False, "bad_signature")
            # HTTP and gRPC issue identical receipts for the same transfer.
            http_receipt = await LedgerClient(bob).receipt("g-1")
            assert receipt_to_proto(http_receipt) == paid.receipt

            hold = await ga.call(
                "Reserve",
                ledger_pb2.LedgerReserveRequest(
                    transfer_id="g-hold", to_account=bob.did, amount=100, timeout_ms=60_000
                ),
            )
            posted = await ga.call(
                "Post",
                ledger_pb2.LedgerPostRequest(pending_id=hold.id, transfer_id="g-post", amount=40),
            )
            assert posted.receipt.amount == 40
            balance = await ga.call("GetBalance", ledger_pb2.GetBalanceRequest())
            assert (balance.balance, balance.available) == (340, 340)
            page = await gb.call("History", ledger_pb2.LedgerHistoryRequest(account=bob.did))
            assert [e.transfer.id for e in page.entries] == ["g-1", "g-hold", "g-post"]

            refusals = [
                (
                    gb.call("GetBalance", ledger_pb2.GetBalanceRequest(account=alice.did)),
                    grpc.StatusCode.PERMISSION_DENIED,
                    "not_account_owner",
                ),
                (
                    ga.call(
                        "Transfer",
                        ledger_pb2.LedgerTransferRequest(
                            transfer_id="g-2", to_account=bob.did, amount=-1
                        ),
                    ),
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "amount_must_be_positive",
                ),
                (
                    ga.call(
                        "Transfer",
                        ledger_pb2.LedgerTransferRequest(
                            transfer_id="g-3", to_account=bob.did, amount=10_000
                        ),
                    ),
                    grpc.StatusCode.ALREADY_EXISTS,
                    "exceeds_credits",
                ),
                (
                    ga.call(
                        "Post",
                        ledger_pb2.LedgerPostRequest(pending_id=hold.id, transfer_id="g-post-2"),
                    ),
                    grpc.StatusCode.ALREADY_EXISTS,
                    "pending_already_resolved",
                ),
                (
                    ga.call(
                        "Transfer",
                        ledger_pb2.LedgerTransferRequest(
                            transfer_id="g-4", to_account="nobody", amount=1
                        ),
                    ),
                    grpc.StatusCode.NOT_FOUND,
                    "unknown_account",
                ),
                (
                    ga.stub.GetBalance(ledger_pb2.GetBalanceRequest()),
                    grpc.StatusCode.UNAUTHENTICATED,
                    "auth_required",
                ),
                (
                    ga.call("Issue", ledger_pb2.LedgerIssueRequest(account=alice.did, amount=5)),
                    grpc.StatusCode.PERMISSION_DENIED,
                    "admin_required",
                ),
            ]
            for call, code, reason in refusals:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call
                assert info.value.code() == code
                assert dict(info.value.trailing_metadata() or ())["coral-reason"] == reason
            assert await balance_of(alice) == 340 and await balance_of(bob) == 160
    finally:
        await alice.close()
        await bob.close()


def award_events(page: HistoryPage) -> list[dict[str, Any]]:
    return [e.message.data()[0] for e in page.entries if e.message.kind == "coral.award"]


async def run_auction(
    boss: CoralClient, bidders: list[CoralClient], thread: str, prices: list[int]
):
    cfp = await boss.send(thread, data={"cfp": {"task": "t", "deadline_ms": now_ms() + 60_000}})
    for bidder, price in zip(bidders, prices, strict=True):
        await bidder.send(thread, data={"bid": {"price": price}})
    return cfp.message.id, award_events(await boss.history(thread))[-1]


async def test_contract_net_award_reserves_and_acceptance_pays(node_factory):
    node = node_factory("node")
    boss, cheap, dear = await agents(node, "boss", "cheap", "dear")
    try:
        await issue(boss, node, boss.did, 100)
        thread = (await boss.create_thread("cn", [cheap.did, dear.did], strategy="contract_net")).id
        cfp_id, award = await run_auction(boss, [cheap, dear], thread, [30, 45])
        assert award["award"]["winner"] == cheap.did
        assert award["payment"]["status"] == "reserved"
        assert award["payment"]["transfer_id"] == f"award:{cfp_id}"
        held = await LedgerClient(boss).balance()
        assert (held.balance, held.available) == (100, 70)

        # Only the initiator settles; then acceptance pays the winner.
        assert await refused(cheap.send(thread, data={"accept_award": cfp_id})) == (
            403,
            "not_account_owner",
        )
        await boss.send(thread, data={"accept_award": cfp_id})
        assert await balance_of(boss) == 70 and await balance_of(cheap) == 30
        receipt = await LedgerClient(cheap).receipt(f"award:{cfp_id}.post")
        LedgerClient(cheap).verify_receipt(receipt, node.node_id)
        assert await refused(boss.send(thread, data={"reject_award": cfp_id})) == (
            409,
            "pending_already_resolved",
        )

        # Second round: rejection voids the reservation and the funds come back.
        cfp2, award2 = await run_auction(boss, [cheap, dear], thread, [60, 50])
        assert award2["award"]["winner"] == dear.did and award2["payment"]["status"] == "reserved"
        assert (await LedgerClient(boss).balance()).available == 20
        await boss.send(thread, data={"reject_award": cfp2})
        held = await LedgerClient(boss).balance()
        assert (held.balance, held.available) == (70, 70)
        assert await balance_of(dear) == 0

        # An initiator who cannot pay still gets an award, marked unfunded.
        _, award3 = await run_auction(boss, [cheap, dear], thread, [500, 400])
        assert award3["payment"]["status"] == "unfunded"
        assert award3["payment"]["reason"] == "exceeds_credits"
    finally:
        for client in (boss, cheap, dear):
            await client.close()


@pytest.mark.postgres
async def test_ledger_api_on_postgresql_survives_restart(node_factory, postgres_server):
    from tests.support.postgres import fresh_database

    dsn = await fresh_database(postgres_server, "ledger_node")
    # The opt-out: only the ledger in PostgreSQL, every other store in data_dir/coral.db.
    node = node_factory("pg", CORAL_DATABASE_URL=dsn, CORAL_DATABASE_STORES="ledger")
    alice, bob = await agents(node, "alice", "bob")
    la = LedgerClient(alice)
    await issue(alice, node, alice.did, 300)
    paid = await la.transfer(to=bob.did, amount=120, transfer_id="pg-1")
    assert (await la.transfer(to=bob.did, amount=120, transfer_id="pg-1")).duplicate
    la.verify_receipt(paid.receipt, node.node_id)
    assert await refused(la.transfer(to=bob.did, amount=1_000)) == (409, "exceeds_credits")
    assert not (node.data_dir / "ledger.db").exists()
    await alice.close()
    await bob.close()
    node.kill()
    node.start()
    alice = CoralClient(node.http, alice.identity)
    try:
        assert await balance_of(alice) == 180
        assert (await LedgerClient(alice).receipt("pg-1")) == paid.receipt
    finally:
        await alice.close()
    # The dashboard reads threads from the SQLite file and the ledger from PostgreSQL.
    with sqlite3.connect(node.data_dir / "coral.db") as local:
        assert local.execute("SELECT COUNT(*) FROM agents").fetchone() == (2,)
    ledger = node.get_json("/v1/dashboard/snapshot")["ledger"]
    balances = {a["id"]: a["balance"] for a in ledger["accounts"]}
    assert balances[alice.did] == 180 and balances[bob.did] == 120
    assert ledger["recent"][0]["id"] == "pg-1"


def cli(node: NodeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coral", "ledger", *args, "--data-dir", str(node.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_issues_pays_lists_and_verifies_receipts(node_factory, tmp_path: Path):
    node = node_factory("node")
    alice_key, bob_key = Identity.generate(), Identity.generate()

    async def register() -> None:
        for identity, name in ((alice_key, "alice"), (bob_key, "bob")):
            async with CoralClient(node.http, identity) as client:
                await client.register(AgentManifest(name=name))

    asyncio.run(register())
    key_file = tmp_path / "alice.key"
    key_file.write_text(alice_key.seed.hex() + "\n")

    issued = cli(node, "issue", alice_key.did, "500", "--json")
    assert issued.returncode == 0, issued.stderr
    paid = cli(
        node,
        "transfer",
        "--key",
        str(key_file),
        "--to",
        bob_key.did,
        "--amount",
        "80",
        "--transfer-id",
        "cli-1",
        "--json",
    )
    assert paid.returncode == 0, paid.stderr
    answer = json.loads(paid.stdout)
    assert answer["transfer"]["amount"] == 80 and not answer["duplicate"]
    again = cli(
        node,
        "transfer",
        "--key",
        str(key_file),
        "--to",
        bob_key.did,
        "--amount",
        "80",
        "--transfer-id",
        "cli-1",
        "--json",
    )
    assert json.loads(again.stdout)["duplicate"] is True

    balance = json.loads(cli(node, "balance", "--key", str(key_file), "--json").stdout)
    assert balance["balance"] == 420
    operator_view = json.loads(cli(node, "balance", bob_key.did, "--json").stdout)
    assert operator_view["balance"] == 80
    listed = json.loads(cli(node, "history", "--key", str(key_file), "--json").stdout)
    assert [e["transfer"]["amount"] for e in listed["entries"]] == [500, 80]
    assert "cli-1" in cli(node, "history", "--key", str(key_file)).stdout  # rich table

    receipt_file = tmp_path / "receipt.json"
    receipt_file.write_text(json.dumps(answer["receipt"]))
    assert cli(node, "verify-receipt", str(receipt_file)).returncode == 0
    receipt_file.write_text(json.dumps({**answer["receipt"], "amount": 8_000}))
    forged = cli(node, "verify-receipt", str(receipt_file), "--json")
    assert forged.returncode == 1 and json.loads(forged.stdout)["valid"] is False

    stranger = tmp_path / "stranger.key"
    stranger.write_text(Identity.generate().seed.hex())
    stolen = cli(node, "transfer", "--key", str(stranger), "--to", bob_key.did, "--amount", "1")
    assert stolen.returncode == 1 and "unknown_account" in stolen.stderr


async def test_team_budget_is_escrowed_and_paid_through_the_ledger(node_factory):
    from coral.protocol.agent import Price
    from coral.teams import Money, RoleSpec
    from coral_sdk.teams import TeamClient, accept_invitations

    node = node_factory("node")
    (alice,) = await agents(node, "alice")
    bob, carol = (
        CoralClient(node.http, Identity.generate()),
        CoralClient(node.http, Identity.generate()),
    )
    await bob.register(
        AgentManifest(
            name="bob", capabilities=("write",), prices=(Price(capability="write", amount=30),)
        )
    )
    await carol.register(
        AgentManifest(
            name="carol", capabilities=("review",), prices=(Price(capability="review", amount=5),)
        )
    )
    stop = asyncio.Event()
    handlers = [
        asyncio.create_task(accept_invitations(bob, lambda offer: 30, stop=stop)),
        asyncio.create_task(accept_invitations(carol, lambda offer: 5, stop=stop)),
    ]
    try:
        await issue(alice, node, alice.did, 1_000)
        roles = (
            RoleSpec(name="writer", capabilities=("write",), max_price=40),
            RoleSpec(name="reviewer", capabilities=("review",)),
        )
        teams = TeamClient(alice)
        team = await teams.form_team(
            goal="report", roles=roles, budget=Money(amount=100), timeout_s=20
        )
        held = await LedgerClient(alice).balance()
        assert (held.balance, held.available) == (1_000, 900)
        # The escrow account is node-held: not even the initiator may spend from it.
        escrow_id = f"team:{team.team_id}"
        grab = post_json(
            alice,
            "/v1/ledger/transfers",
            {"transfer_id": "grab", "from": escrow_id, "to": alice.did, "amount": 1},
        )
        assert await refused(grab) == (403, "not_account_owner")

        await teams.dissolve(team.team_id, goal_met=True)
        assert await balance_of(bob) == 30 and await balance_of(carol) == 5
        after = await LedgerClient(alice).balance()
        assert (after.balance, after.available) == (965, 965)
    finally:
        stop.set()
        await asyncio.gather(*handlers, return_exceptions=True)
        for client in (alice, bob, carol):
            await client.close()
