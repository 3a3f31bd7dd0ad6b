"""Strategy lookup: built-ins, explicit registration, and third-party entry points."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from coral.coordination.errors import UnknownStrategy
from coral.coordination.registry import ENTRY_POINT_GROUP, StrategyRegistry
from coral.coordination.strategies.broadcast import BroadcastStrategy
from coral.coordination.strategy import Decision, Strategy, ThreadView, TimedStrategy
from coral.protocol.errors import CoralError
from coral.protocol.identity import Identity
from coral.protocol.message import Message

from .conftest import FakeClock, open_service, post

PLUGIN = '''
"""A third-party strategy: only the moderator (thread creator) may post links."""

from coral.coordination.strategy import BaseStrategy, Decision, SystemEvent
from coral.protocol.errors import Forbidden


class ModeratedStrategy(BaseStrategy):
    name = "moderated"

    def on_message(self, view, message):
        if "http" in message.text() and message.sender != view.creator:
            return Decision.refuse(Forbidden("only the moderator posts links", reason="no_links"))
        count = int(view.state.get("count", 0)) + 1
        events = (SystemEvent("milestone", {"count": count}),) if count % 2 == 0 else ()
        return Decision(state={"count": count}, events=events)
'''


@pytest.fixture
def plugin_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install a tiny distribution (package + dist-info) on sys.path, as pip would."""
    site = tmp_path / "site"
    package = site / "acme_strategies"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    dist_info = site / "acme_strategies-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: acme-strategies\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n"
        "moderated = acme_strategies:ModeratedStrategy\n"
        "broken = acme_strategies_missing:Nothing\n"
    )
    monkeypatch.syspath_prepend(str(site))
    return site


def test_default_registry_has_the_builtins() -> None:
    registry = StrategyRegistry.default()
    assert {"broadcast", "round_robin", "planner", "contract_net", "majority_vote"} <= set(
        registry.names()
    )


def test_unknown_strategy_is_a_typed_error() -> None:
    registry = StrategyRegistry([BroadcastStrategy()])
    with pytest.raises(UnknownStrategy) as caught:
        registry.get("nope")
    assert caught.value.reason == "unknown_strategy" and caught.value.category == "invalid"


def test_registering_something_that_is_not_a_strategy_fails() -> None:
    with pytest.raises(TypeError):
        StrategyRegistry().register(object())  # type: ignore[arg-type]


def test_entry_point_strategy_loads_and_broken_ones_are_reported(plugin_on_path: Path) -> None:
    registry = StrategyRegistry.default()
    assert "moderated" in registry.names()
    assert registry.get("moderated").name == "moderated"
    assert "broken" in registry.load_errors and "broken" not in registry.names()
    assert "broadcast" in registry.names()  # one bad plug-in does not hide the others


async def test_third_party_strategy_runs_threads_across_restart(
    plugin_on_path: Path,
    tmp_path: Path,
    clock: FakeClock,
    node_identity: Identity,
    agents: list[Identity],
) -> None:
    mod, member = agents[:2]
    path = tmp_path / "n.db"
    db, service = await open_service(path, clock, node_identity, StrategyRegistry.default())
    thread = await service.create_thread(mod.did, "forum", [member.did], strategy="moderated")
    with pytest.raises(CoralError) as caught:
        await post(service, member, thread.id, text="see http://spam")
    assert caught.value.reason == "no_links"
    await post(service, mod, thread.id, text="rules: http://example.org/rules")
    await db.close()

    db, service = await open_service(path, clock, node_identity, StrategyRegistry.default())
    try:
        await post(service, member, thread.id, text="thanks")
        page = await service.history(mod.did, thread.id)
        milestones = [e for e in page.entries if e.message.kind == "coral.milestone"]
        assert [m.message.data()[0]["count"] for m in milestones] == [2]
    finally:
        await db.close()


class EchoStrategy:
    """A strategy written from scratch: the four protocol members, no on_tick."""

    name = "echo"

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return dict(options)

    def on_thread_created(self, view: ThreadView) -> Decision:
        return Decision(next_agents=(view.creator,))

    def on_message(self, view: ThreadView, message: Message) -> Decision:
        return Decision(next_agents=(message.sender,))


async def test_a_minimal_strategy_without_ticks_works(
    tmp_path: Path, clock: FakeClock, node_identity: Identity, agents: list[Identity]
) -> None:
    registry = StrategyRegistry([EchoStrategy()])
    assert isinstance(registry.get("echo"), Strategy)
    assert not isinstance(registry.get("echo"), TimedStrategy)
    db, service = await open_service(tmp_path / "n.db", clock, node_identity, registry)
    try:
        a, b = agents[:2]
        thread = await service.create_thread(a.did, "echo", [b.did], strategy="echo")
        await post(service, b, thread.id)
        assert await service.tick(thread.id) == ()
        page = await service.history(a.did, thread.id)
        turns = [e.message.mentions for e in page.entries if e.message.kind == "coral.turn"]
        assert turns == [(a.did,), (b.did,)]
    finally:
        await db.close()
