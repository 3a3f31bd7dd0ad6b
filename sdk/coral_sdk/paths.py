"""Where agent keys live when no path is given: the user's data dir, never the working dir."""

from __future__ import annotations

from pathlib import Path

import platformdirs


def agent_data_dir() -> Path:
    """The per-user directory for agent keys and cursors (XDG data dir on Linux)."""
    return Path(platformdirs.user_data_dir("coral-agent", appauthor=False))


def default_key_file(agent_name: str) -> Path:
    """``<user data dir>/coral-agent/<agent_name>.key``: where an agent's key is kept by default."""
    return agent_data_dir() / f"{agent_name}.key"
