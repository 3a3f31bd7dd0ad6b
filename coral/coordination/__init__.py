"""The coordination engine: sessions of threads, pluggable strategies, and waiting.

Adapters call ``CoordinationService``, and every inbound agent message goes
through ``MessageGateway``; storage plugs in through
``CoordinationStore`` (``coral.store.coordination_sqlite`` by default);
strategies plug in through ``StrategyRegistry`` and the entry point group
``coral.strategies``.
"""

from coral.coordination.gateway import MessageGateway
from coral.coordination.model import (
    HistoryPage,
    InboxEntry,
    Thread,
    ThreadEntry,
    WaitKind,
    WaitResult,
)
from coral.coordination.ports import (
    CoordinationStore,
    ReplicatedThreads,
    SeenIds,
    ThreadWrite,
    WriteScope,
)
from coral.coordination.registry import StrategyRegistry
from coral.coordination.service import CoordinationService
from coral.coordination.strategy import (
    BaseStrategy,
    Decision,
    Strategy,
    SystemEvent,
    ThreadView,
    TimedStrategy,
)

__all__ = [
    "BaseStrategy",
    "CoordinationService",
    "CoordinationStore",
    "Decision",
    "HistoryPage",
    "InboxEntry",
    "MessageGateway",
    "ReplicatedThreads",
    "SeenIds",
    "Strategy",
    "StrategyRegistry",
    "SystemEvent",
    "Thread",
    "ThreadEntry",
    "ThreadView",
    "ThreadWrite",
    "TimedStrategy",
    "WaitKind",
    "WaitResult",
    "WriteScope",
]
