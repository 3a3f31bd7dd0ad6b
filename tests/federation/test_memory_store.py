"""The in-memory federation store forgets received envelope ids like the SQL stores do."""

from __future__ import annotations

from coral.federation.memory import InMemoryFederationStore


async def test_pruning_forgets_only_ids_received_before_the_cut() -> None:
    store = InMemoryFederationStore()
    assert store.record_inbound_in(None, "env-old", "did:coral:node-b", 1_000)
    assert store.record_inbound_in(None, "env-new", "did:coral:node-b", 5_000)
    assert not store.record_inbound_in(None, "env-old", "did:coral:node-b", 6_000), "a repeat"

    assert await store.prune_inbox(5_000) == 1

    assert store.record_inbound_in(None, "env-old", "did:coral:node-b", 7_000), "forgotten"
    assert not store.record_inbound_in(None, "env-new", "did:coral:node-b", 7_000), "kept"
