"""Stateful property test: LedgerState against a naive model, invariants after every step."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

from tests.ledger.ledger_model import LedgerMachine

LedgerMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPureLedgerMatchesModel = LedgerMachine.TestCase
