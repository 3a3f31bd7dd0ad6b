"""Registration and lookup of agents, local and replicated from peers.

Local registration checks the agent's own signature, that the record names
this node as home, that it is fresh and newer than what is stored, then
countersigns it. Records from peers must carry both signatures already.
A higher ``version`` always wins; a tombstone (``deleted``) wins the same way.

Names: a name is bound, within a scope, to the first did that registers it
on this node; another did registering it gets NameTaken (409). The binding
outlives deregistration (so nobody can grab a name the moment its holder
goes offline), moves with a key rotation, and is what name lookups resolve
through. The node-wide scope is ``""``; a coral-server session may use its
own scope, so the same name in two sessions is two agents. Agents homed on
other nodes carry no binding here: a name with no local binding resolves to
the one remote agent of that name, and is refused as ambiguous when several
remote nodes list it (ask for the did instead).
"""

from __future__ import annotations

from collections.abc import Callable

from coral.agents.keyrotation import RotationRefused, RotationRequest, check_agent_rotation
from coral.agents.ports import AgentStore
from coral.protocol.agent import (
    AgentRecord,
    countersign_record,
    verify_agent_signature,
    verify_record,
)
from coral.protocol.errors import Conflict, FromFuture, InvalidMessage, NotFound
from coral.protocol.identity import Identity


class AgentNotRegistered(NotFound):
    """No live record for the agent (never registered, or deregistered)."""

    reason = "agent_not_registered"


class StaleRecord(Conflict):
    """A record whose version is not newer than the stored one."""

    reason = "stale_record"


class NameTaken(Conflict):
    """The name is bound to another agent on this node."""

    reason = "name_taken"


class AmbiguousName(Conflict):
    """Several remote agents carry the name and none is bound here."""

    reason = "ambiguous_name"


#: The node-wide naming scope (coral-server sessions may bind names in their own).
NODE_SCOPE = ""


class AgentDirectory:
    """The node's view of every agent it knows, local and remote."""

    def __init__(
        self,
        store: AgentStore,
        node: Identity,
        clock: Callable[[], int],
        max_skew_ms: int = 300_000,
    ) -> None:
        self.store = store
        self.node = node
        self.clock = clock
        self.max_skew_ms = max_skew_ms
        #: Called with every record stored (local or replicated), in order.
        self.listeners: list[Callable[[AgentRecord], None]] = []

    async def register(self, record: AgentRecord) -> AgentRecord:
        """Accept a record signed by its agent, countersign it, and store it.

        Re-registering a record equal to the stored one (but for the node's
        signature) returns the stored record: a retry is idempotent.

        Raises:
            SignatureError: the record is not signed by its agent
                (``missing_signature`` when unsigned).
            InvalidMessage: the record names another home node
                (``wrong_home_node``).
            FromFuture: ``updated_at`` lies beyond the allowed clock skew.
            StaleRecord: the version is not newer than the stored one.
            AgentNotRegistered: a tombstone for an agent never registered.
            NameTaken: the record's name is bound to another did here.
            StorageUnavailable: the store could not be read or written.

        Cancellation: each step commits on its own. Cancelled after the
        name was bound but before the record was stored, the name stays bound
        to the agent (as after any failure there); registering again completes it.
        """
        verify_agent_signature(record)
        if record.home_node != self.node.did:
            raise InvalidMessage(
                "record names another home node; register with that node",
                reason="wrong_home_node",
            )
        if record.updated_at > self.clock() + self.max_skew_ms:
            raise FromFuture("record updated_at is in the future")
        current = await self.store.get(record.agent)
        if current is not None and record.version <= current.version:
            if record.model_copy(update={"node_signature": None}) == current.model_copy(
                update={"node_signature": None}
            ):
                return current  # an idempotent retry of the same registration
            raise StaleRecord(
                f"version {record.version} is not newer than the stored {current.version}"
            )
        if current is None and record.deleted:
            raise AgentNotRegistered("cannot deregister an agent that is not registered")
        if not record.deleted:  # a tombstone claims nothing (nor frees its name)
            await self._claim_name(record.manifest.name, record.agent)
            if current is not None and current.manifest.name != record.manifest.name:
                await self.store.release_name(NODE_SCOPE, current.manifest.name, record.agent)
        signed = countersign_record(record, self.node)
        await self.store.put(signed)
        for listener in self.listeners:
            listener(signed)
        return signed

    async def rotate(self, request: RotationRequest) -> tuple[AgentRecord, AgentRecord]:
        """Move a local agent to a new key: tombstone the old did, list the new one.

        ``request`` must pass ``check_agent_rotation`` against the stored record.
        Both records are stored through ``register``, so a retry after a crash
        between the two is idempotent. Returns (tombstone, new record), countersigned.

        Raises:
            AgentNotRegistered: the old did has no live record.
            RotationRefused: the request does not continue the stored record
                (wrong dids, changed manifest or home node, stale tombstone),
                or the new key already has a record.
            SignatureError: a hand-over or record signature is missing or wrong.
            FromFuture: the hand-over is dated in the future.
            InvalidMessage: the hand-over hands a key over to itself.
            NameTaken: the name is bound to a third agent.
            StorageUnavailable: the store could not be read or written.

        Cancellation: the name moves first and each record lands on its own,
        so a cancelled rotation may leave the name with the new key, or the
        old did tombstoned without its replacement listed; retrying the same
        request completes it (the same as after a crash).
        """
        current = await self.get(request.handover.old_did)
        check_agent_rotation(current, request, self.clock(), self.max_skew_ms)
        if await self.store.get(request.replacement.agent) is not None:
            raise RotationRefused("the new key already has a directory record")
        # The name moves first: a crash before the records land leaves it with
        # the new key, which the retried rotation then registers under it.
        name = current.manifest.name
        await self._claim_name(name, current.agent)
        await self.store.rebind_name(NODE_SCOPE, name, current.agent, request.replacement.agent)
        tombstone = await self.register(request.tombstone)
        return tombstone, await self.register(request.replacement)

    async def merge_remote(self, record: AgentRecord) -> bool:
        """Accept a fully signed record from a peer if newer; True when stored.

        Records homed on this node are ignored (False): this node is their authority.

        Raises:
            SignatureError: the agent's or the home node's signature is
                missing or does not verify.
            StorageUnavailable: the store could not be written.
        """
        verify_record(record)
        if record.home_node == self.node.did:
            return False  # we are the authority for our own agents
        stored = await self.store.put(record)
        if stored:
            for listener in self.listeners:
                listener(record)
        return stored

    async def get(self, did: str) -> AgentRecord:
        """The live record of ``did``.

        Raises:
            AgentNotRegistered: no record, or only a tombstone, for ``did``.
        """
        record = await self.store.get(did)
        if record is None or record.deleted:
            raise AgentNotRegistered(f"agent {did} is not registered")
        return record

    async def _claim_name(self, name: str, did: str) -> None:
        holder = await self.store.name_holder(NODE_SCOPE, name)
        if holder is None:
            # Records stored before names were bound: the earliest local holder
            # keeps the name (a one-time catch-up per name).
            earlier = [
                r
                for r in await self.store.search(name=name, home_node=self.node.did)
                if r.agent != did
            ]
            first = min(earlier, key=lambda r: (r.updated_at, r.agent), default=None)
            holder = await self.store.bind_name(
                NODE_SCOPE, name, first.agent if first else did, self.clock()
            )
            if holder == did:
                return
        if holder != did:
            raise NameTaken(f"the name {name!r} belongs to another agent on this node ({holder})")

    async def resolve(self, ref: str, *, scope: str = NODE_SCOPE) -> AgentRecord:
        """Find an agent by did or by name, through the name's binding.

        Raises:
            AgentNotRegistered: nothing answers to ``ref``, or its holder is
                deregistered.
            AmbiguousName: several remote agents carry an unbound name.
        """
        if ref.startswith("did:"):
            return await self.get(ref)
        holder = await self.store.name_holder(scope, ref)
        if holder is not None:
            return await self.get(holder)
        matches = await self.store.search(name=ref)
        local = [r for r in matches if r.home_node == self.node.did]
        if local and scope == NODE_SCOPE:  # stored before names were bound
            first = min(local, key=lambda r: (r.updated_at, r.agent))
            return await self.get(await self.store.bind_name(scope, ref, first.agent, self.clock()))
        remote = [r for r in matches if r.home_node != self.node.did]
        if not remote:
            raise AgentNotRegistered(f"no agent named {ref!r}")
        if len(remote) > 1:
            raise AmbiguousName(
                f"{len(remote)} agents on other nodes are named {ref!r}; address one by its did"
            )
        return remote[0]

    async def resolve_did(self, ref: str, *, scope: str = NODE_SCOPE) -> str:
        """The did of the agent named or identified by ``ref``.

        Raises:
            AgentNotRegistered: nothing answers to ``ref`` (see ``resolve``).
            AmbiguousName: several remote agents carry an unbound name.
        """
        return (await self.resolve(ref, scope=scope)).agent

    async def is_registered(self, did: str) -> bool:
        """True when ``did`` has a live record here."""
        record = await self.store.get(did)
        return record is not None and not record.deleted

    async def search(
        self,
        *,
        name: str | None = None,
        capability: str | None = None,
        local_only: bool = False,
        include_deleted: bool = False,
    ) -> list[AgentRecord]:
        """Agents matching the filters; ``local_only`` keeps those homed here."""
        return await self.store.search(
            name=name,
            capability=capability,
            home_node=self.node.did if local_only else None,
            include_deleted=include_deleted,
        )
