"""What the agent directory needs from storage (``AgentStore``).

``coral.store.agents_sqlite`` implements it over the node database;
``coral.agents.memory.MemoryAgentStore`` is the in-memory twin fast tests use.
Both pass the same contract tests (``tests/store/test_port_contracts_agents.py``).
"""

from __future__ import annotations

from typing import Protocol

from coral.protocol.agent import AgentRecord


class AgentStore(Protocol):
    """Persistence of agent records (one row per agent did) and of name bindings."""

    async def get(self, did: str) -> AgentRecord | None:
        """The stored record for ``did`` (tombstones included), or None."""
        ...

    async def put(self, record: AgentRecord) -> bool:
        """Store the record if its version is newer than the stored one; True when stored.

        Atomic: two racing puts of the same did leave the higher version.
        """
        ...

    async def search(
        self,
        *,
        name: str | None = None,
        capability: str | None = None,
        home_node: str | None = None,
        include_deleted: bool = False,
    ) -> list[AgentRecord]:
        """Records matching every given filter, ordered by name then did."""
        ...

    async def bind_name(self, scope: str, name: str, did: str, now_ms: int) -> str:
        """Bind ``name`` to ``did`` unless already bound; returns the holder's did (atomic)."""
        ...

    async def name_holder(self, scope: str, name: str) -> str | None:
        """The did ``name`` is bound to in ``scope``, or None."""
        ...

    async def rebind_name(self, scope: str, name: str, old_did: str, new_did: str) -> bool:
        """Move a binding from ``old_did`` to ``new_did`` (idempotent); True when it moved.

        False when ``name`` is unbound in ``scope`` or bound to a third did.
        """
        ...

    async def release_name(self, scope: str, name: str, did: str) -> None:
        """Drop ``did``'s binding of ``name`` (no-op when held by another did)."""
        ...
