"""Fixtures for the team tests."""

from __future__ import annotations

import pytest
from team_builders import Team, form_team


@pytest.fixture
def team() -> Team:
    """A team of three workers with its first key epoch."""
    return form_team(3)
