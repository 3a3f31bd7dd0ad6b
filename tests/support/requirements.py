"""Missing test requirements: skip loudly on a developer machine, fail in CI.

CI installs PostgreSQL and Chromium itself (``.ci/run``); when it runs with
``CI=true`` a missing binary means its install step broke, and skipping would
hide that behind a green run.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """Whether the suite runs under CI (``CI=true``, as ``.ci/run`` is invoked)."""
    return os.environ.get("CI", "").lower() == "true"


def missing_requirement(message: str) -> NoReturn:
    """Skip with ``message``, or fail with it when ``CI=true``."""
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing requirement fails the run)", pytrace=False)
    pytest.skip(message)
