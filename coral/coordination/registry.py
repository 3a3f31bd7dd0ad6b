"""Find strategies by name: built-ins, entry points, and explicit registration.

Third parties publish a strategy under the entry point group
``coral.strategies``. A broken plug-in is recorded in ``load_errors`` and
skipped, so one bad package never takes every strategy down with it.
"""

from __future__ import annotations

import importlib.metadata
import logging
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
        #: Entry point name -> why it could not be loaded.
        self.load_errors: dict[str, str] = {}
        for strategy in strategies:
            self.register(strategy)

    def register(self, strategy: Strategy, name: str | None = None) -> None:
        """Make ``strategy`` available under ``name`` (default: its own name)."""
        if not isinstance(strategy, Strategy):
            raise TypeError(f"{strategy!r} does not implement the Strategy protocol")
        self._strategies[name or strategy.name] = strategy

    def get(self, name: str) -> Strategy:
        """The strategy called ``name``; UnknownStrategy when there is none."""
        try:
            return self._strategies[name]
        except KeyError:
            known = ", ".join(sorted(self._strategies)) or "none"
            raise UnknownStrategy(f"no strategy {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._strategies)

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register every loadable strategy published under ``group``."""
        for entry_point in importlib.metadata.entry_points(group=group):
            try:
                loaded = entry_point.load()
                strategy = loaded() if isinstance(loaded, type) else loaded
                self.register(strategy, entry_point.name)
            except Exception as exc:  # a plug-in may fail in any way; keep the rest
                self.load_errors[entry_point.name] = f"{type(exc).__name__}: {exc}"
                log.warning("strategy entry point %r failed to load: %s", entry_point.name, exc)

    @classmethod
    def default(cls) -> StrategyRegistry:
        """The built-in strategies plus whatever the installed entry points add."""
        registry = cls(builtin_strategies())
        registry.load_entry_points()
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
