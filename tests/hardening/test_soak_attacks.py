"""A short run of benchmarks/soak_attacks.py: attacks interleaved with normal traffic.

The node must answer every attack with the expected status, stay healthy,
stop cleanly on SIGTERM and leave no unexpected traceback in its log.
"""

from __future__ import annotations

from benchmarks.soak_attacks import soak


def test_attacks_mixed_with_normal_traffic_leave_the_node_healthy_and_the_log_clean() -> None:
    report = soak(seconds=8)
    assert report.rounds >= 1
    assert dict(report.unexpected) == {}
    assert report.healthy and report.exit_code == 0
    assert report.tracebacks == [], report.tracebacks[:1]
