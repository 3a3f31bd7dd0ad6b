"""The agent an A2A URL or tenant names, resolved through the directory and remembered briefly.

Every A2A request names its agent; resolving a name is two directory reads
(the name's binding, then the record). ``AgentNames`` keeps each answer for
``ttl_s`` and forgets all of them whenever this process's directory stores a
record (a registration, an update, a deregistration, a federated record), so
a change made here is seen at once; one made by another replica of the node
is seen within ``ttl_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from coral.agents.directory import AgentDirectory
from coral.protocol.agent import AgentRecord

#: How long a resolved name is trusted without asking the directory again.
DEFAULT_TTL_S = 1.0
#: Most names remembered at once (beyond it, all are forgotten).
MAX_NAMES = 1024


class AgentNames:
    """Name -> live agent record, through ``AgentDirectory.resolve``, for a short while."""

    def __init__(
        self,
        directory: AgentDirectory,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.ttl_s = ttl_s
        self.clock = clock
        self._known: dict[str, tuple[float, AgentRecord]] = {}
        self._changes = 0
        directory.listeners.append(self._stored)

    def _stored(self, record: AgentRecord) -> None:
        self._changes += 1
        self._known.clear()

    async def resolve(self, name: str) -> AgentRecord:
        """The live record of the agent ``name`` (a name or a did) refers to.

        Raises:
            AgentNotRegistered: nothing live answers to ``name``.
            AmbiguousName: several remote agents carry the unbound name.
            StorageUnavailable: the directory could not be read.
        """
        now = self.clock()
        known = self._known.get(name)
        if known is not None and known[0] > now:
            return known[1]
        changes = self._changes
        record = await self.directory.resolve(name)
        if changes == self._changes:  # nothing was stored while this read ran
            if len(self._known) >= MAX_NAMES:
                self._known.clear()
            self._known[name] = (now + self.ttl_s, record)
        return record
