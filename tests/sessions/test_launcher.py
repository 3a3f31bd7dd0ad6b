"""The launcher's bookkeeping (coral/sessions/launcher.py): backoff, restarts, stopping, views."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coral.sessions.launcher import (
    BackoffPolicy,
    InvalidLaunch,
    LaunchNotFound,
    LaunchSpec,
    LaunchTable,
)


def spec(replicas: int = 2) -> LaunchSpec:
    return LaunchSpec("echo", "registry/echo.toml", ("python", "-m", "x"), {"A": "1"}, replicas)


@given(st.integers(1, 40))
def test_backoff_grows_then_caps(failures: int) -> None:
    policy = BackoffPolicy(initial_ms=100, factor=2.0, max_ms=5_000)
    delay = policy.delay_ms(failures)
    assert 100 <= delay <= 5_000
    assert policy.delay_ms(failures + 1) >= delay


def test_crashes_restart_with_growing_delay_and_healthy_runs_reset_it() -> None:
    table = LaunchTable(
        BackoffPolicy(initial_ms=100, factor=2.0, max_ms=1_000, healthy_after_ms=10_000)
    )
    launched = table.add(spec(), now_ms=0)
    launched.started(0, pid=10, now_ms=0)
    launched.started(1, pid=11, now_ms=0)
    assert launched.status == "running"
    assert launched.exited(0, 1, now_ms=50) == 100
    launched.started(0, pid=12, now_ms=200)
    assert launched.exited(0, 1, now_ms=250) == 200
    assert launched.status == "degraded"
    launched.started(0, pid=13, now_ms=500)
    assert launched.exited(0, -9, now_ms=20_000) == 100  # it ran a while: quick restart
    view = launched.view()["replicas"][0]
    assert view["restarts"] == 3 and view["last_exit_code"] == -9 and view["status"] == "backoff"
    assert view["next_start_at"] == 20_100


def test_stopping_means_no_more_restarts() -> None:
    launched = LaunchTable().add(spec(), now_ms=0)
    launched.started(0, pid=10, now_ms=0)
    launched.stop()
    assert [r.status for r in launched.replicas] == ["stopping", "stopped"]
    assert launched.exited(0, 0, now_ms=5) is None
    assert launched.status == "stopped"


def test_replicas_get_their_shard_in_the_environment() -> None:
    env = spec(3).replica_env(2)
    assert env == {"A": "1", "CORAL_REPLICA_INDEX": "2", "CORAL_REPLICA_COUNT": "3"}


def test_table_refuses_bad_counts_and_unknown_ids() -> None:
    table = LaunchTable()
    with pytest.raises(InvalidLaunch):
        table.add(spec(0), now_ms=0)
    with pytest.raises(LaunchNotFound):
        table.get("nope")
    first = table.add(spec(), now_ms=1)
    second = table.add(spec(), now_ms=2)
    assert [item.id for item in table.all()] == [first.id, second.id]
    table.remove(first.id)
    assert table.all() == [second]
