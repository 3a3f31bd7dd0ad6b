"""In-memory twin of the agent directory's storage port, for fast domain tests."""

from __future__ import annotations

from coral.protocol.agent import AgentRecord


class MemoryAgentStore:
    """``AgentStore`` in dictionaries, with the SQLite store's semantics and ordering."""

    def __init__(self) -> None:
        self._records: dict[str, AgentRecord] = {}
        self._names: dict[tuple[str, str], str] = {}

    async def get(self, did: str) -> AgentRecord | None:
        """The stored record for ``did`` (tombstones included), or None."""
        return self._records.get(did)

    async def put(self, record: AgentRecord) -> bool:
        """Store the record if its version is newer; True when stored."""
        current = self._records.get(record.agent)
        if current is not None and current.version >= record.version:
            return False
        self._records[record.agent] = record
        return True

    async def search(
        self,
        *,
        name: str | None = None,
        capability: str | None = None,
        home_node: str | None = None,
        include_deleted: bool = False,
    ) -> list[AgentRecord]:
        """Records matching every given filter, ordered by name then did."""
        found = [
            r
            for r in self._records.values()
            if (name is None or r.manifest.name == name)
            and (home_node is None or r.home_node == home_node)
            and (include_deleted or not r.deleted)
            and (capability is None or capability in r.manifest.capabilities)
        ]
        return sorted(found, key=lambda r: (r.manifest.name, r.agent))

    async def bind_name(self, scope: str, name: str, did: str, now_ms: int) -> str:
        """Bind ``name`` to ``did`` unless already bound; returns the holder's did."""
        return self._names.setdefault((scope, name), did)

    async def name_holder(self, scope: str, name: str) -> str | None:
        """The did ``name`` is bound to in ``scope``, or None."""
        return self._names.get((scope, name))

    async def rebind_name(self, scope: str, name: str, old_did: str, new_did: str) -> bool:
        """Move a binding from ``old_did`` to ``new_did`` (idempotent); True when it moved."""
        if self._names.get((scope, name)) not in (old_did, new_did):
            return False
        self._names[(scope, name)] = new_did
        return True

    async def release_name(self, scope: str, name: str, did: str) -> None:
        """Drop ``did``'s binding of ``name`` (no-op when held by another did)."""
        if self._names.get((scope, name)) == did:
            del self._names[(scope, name)]
