"""Find strategies by name: built-ins, entry points, and explicit registration.

Third parties publish a strategy under the entry point group
``coral.strategies``. A broken plug-in is recorded in ``load_errors`` and
skipped, so one bad package never takes every strategy down with it.
``StrategyRegistry.default()`` reads the entry points on first use, not when
it is built: finding them scans every installed distribution's metadata
(tens of milliseconds at node start-up).
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from collections.abc import Iterable

from coral.coordination.errors import UnknownStrategy
from coral.coordination.strategy import Strategy

ENTRY_POINT_GROUP = "coral.strategies"
DEFAULT_STRATEGY = "broadcast"

log = logging.getLogger(__name__)


class StrategyRegistry:
    """Strategies by name. Later registrations replace earlier ones of the same name."""

    def __init__(self, strategies: Iterable[Strategy] = ()) -> None:
        self._strategies: dict[str, Strategy] = {}
        self._load_errors: dict[str, str] = {}
        #: An entry point group still to load before the next lookup (see ``default``).
        self._pending: str | None = None
        self._loading = threading.Lock()
        for strategy in strategies:
            self.register(strategy)

    @property
    def load_errors(self) -> dict[str, str]:
        """Entry point name -> why it could not be loaded."""
        self.load_pending()
        return self._load_errors

    def load_pending(self) -> None:
        """Load the entry points ``default`` left for first use; at once when none are left.

        Safe from any thread (the node calls it from a worker thread once it
        serves, so the first lookup usually finds them loaded).
        """
        if self._pending is None:
            return
        with self._loading:
            group = self._pending
            if group is not None:
                self.load_entry_points(group)
                self._pending = None

    def register(self, strategy: Strategy, name: str | None = None) -> None:
        """Make ``strategy`` available under ``name`` (default: its own name)."""
        if not isinstance(strategy, Strategy):
            raise TypeError(f"{strategy!r} does not implement the Strategy protocol")
        self._strategies[name or strategy.name] = strategy

    def get(self, name: str) -> Strategy:
        """The strategy called ``name``; UnknownStrategy when there is none."""
        if self._pending is not None:
            self.load_pending()
        try:
            return self._strategies[name]
        except KeyError:
            known = ", ".join(sorted(self._strategies)) or "none"
            raise UnknownStrategy(f"no strategy {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self.load_pending()
        return sorted(self._strategies)

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register every loadable strategy published under ``group``."""
        for entry_point in importlib.metadata.entry_points(group=group):
            try:
                loaded = entry_point.load()
                strategy = loaded() if isinstance(loaded, type) else loaded
                self.register(strategy, entry_point.name)
            except Exception as exc:  # a plug-in may fail in any way; keep the rest
                self._load_errors[entry_point.name] = f"{type(exc).__name__}: {exc}"
                log.warning("strategy entry point %r failed to load: %s", entry_point.name, exc)

    @classmethod
    def default(cls) -> StrategyRegistry:
        """The built-in strategies plus whatever the installed entry points add.

        The entry points are read at the first lookup (or ``load_pending``), and
        registered over the built-ins as if read now.
        """
        registry = cls(builtin_strategies())
        registry._pending = ENTRY_POINT_GROUP
        return registry


def builtin_strategies() -> list[Strategy]:
    """Fresh instances of the strategies that ship with Coral Node."""
    # Imported here so that importing the registry never drags in every strategy
    # (and strategies may import coral.coordination without a cycle).
    from coral.coordination.strategies.broadcast import BroadcastStrategy
    from coral.coordination.strategies.contract_net import ContractNetStrategy
    from coral.coordination.strategies.planner import PlannerLedStrategy
    from coral.coordination.strategies.round_robin import RoundRobinStrategy
    from coral.coordination.strategies.vote import MajorityVoteStrategy

    return [
        BroadcastStrategy(),
        RoundRobinStrategy(),
        PlannerLedStrategy(),
        ContractNetStrategy(),
        MajorityVoteStrategy(),
    ]
