"""Every bad transfer gets the same typed error from each store, and the database is unchanged."""

from __future__ import annotations

from coral.ledger import Account, LedgerState, LedgerStore
from coral.ledger import errors as e
from tests.ledger.test_ledger_state import BAD_TRANSFERS, SEED_ACCOUNTS, SEED_TRANSFERS


def contents(state: LedgerState) -> tuple[object, ...]:
    return (state.accounts, state.transfers, state.resolutions)


async def test_bad_transfers_are_refused_by_the_store_without_side_effects(
    any_store: LedgerStore,
) -> None:
    assert all(r.ok for r in await any_store.create_accounts(SEED_ACCOUNTS, 1))
    assert all(r.ok for r in await any_store.create_transfers(SEED_TRANSFERS, 3))
    before = contents(await any_store.load_snapshot())
    for request, error, _family in BAD_TRANSFERS:
        [result] = await any_store.create_transfers([request], 10)
        assert type(result.error) is error, (request, result.error)
    # Submitted together, as one group of linked-free events, they fail the same way.
    results = await any_store.create_transfers([r for r, _, _ in BAD_TRANSFERS], 10)
    assert [type(r.error) for r in results] == [err for _, err, _ in BAD_TRANSFERS]
    assert contents(await any_store.load_snapshot()) == before


async def test_store_refuses_bad_accounts_and_keeps_existing_ones(any_store: LedgerStore) -> None:
    await any_store.create_accounts(SEED_ACCOUNTS, 1)
    [clash, empty, nul] = await any_store.create_accounts(
        [Account("alice", "eur"), Account("", "usd"), Account("carol", "usd", owner="c\x00")], 2
    )
    assert isinstance(clash.error, e.ExistsWithDifferentFields)
    assert isinstance(empty.error, e.IdMustNotBeEmpty)
    assert isinstance(nul.error, e.TextNotStorable)
    assert await any_store.get_account("carol") is None
    alice = await any_store.get_account("alice")
    assert alice is not None and alice.ledger == "usd"


async def test_reads_of_unknown_ids_return_none(any_store: LedgerStore) -> None:
    missing = "nobody"
    assert await any_store.get_account(missing) is None
    assert await any_store.get_transfer(missing) is None
    assert await any_store.get_resolution(missing) is None
    assert await any_store.history(missing, 0, 10) == []
