"""HostPolicy: which Host and Origin headers name this node (coral/api/http/host_guard.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coral.api.http.host_guard import HostPolicy
from coral.config import load_config


def test_loopback_names_with_any_port_are_this_node():
    policy = HostPolicy.of([])
    for host in ("localhost", "localhost:7421", "127.0.0.1:1", "[::1]:7421", "LOCALHOST."):
        assert policy.refusal(host, None) is None, host
        assert policy.refusal("127.0.0.1", f"http://{host}") is None, host


def test_a_rebinding_host_or_a_foreign_origin_is_refused():
    policy = HostPolicy.of([])
    assert "attacker.example" in str(policy.refusal("attacker.example:7421", None))
    assert "Origin" in str(policy.refusal("127.0.0.1:7421", "http://attacker.example"))
    for origin in ("null", "file://", "ftp://localhost", "http://localhost.attacker.example"):
        assert policy.refusal("localhost", origin) is not None, origin
    for host in (None, "", "[::1", "localhost:http", "10.0.0.8:7421"):
        assert policy.refusal(host, None) is not None, host


def test_configured_names_and_the_bind_address_are_allowed(tmp_path: Path):
    config = load_config(
        None,
        env={"CORAL_ALLOWED_HOSTS": "node.example.test, 192.0.2.7"},
        overrides={"data_dir": tmp_path, "host": "10.1.2.3", "advertise_host": "coral.example"},
    )
    assert config.allowed_hosts == ["node.example.test", "192.0.2.7"]
    policy = HostPolicy.from_config(config)
    for host in ("node.example.test:443", "192.0.2.7", "10.1.2.3:7421", "coral.example"):
        assert policy.refusal(host, f"https://{host}") is None, host
    assert policy.refusal("10.9.9.9", None) is not None


def test_a_wildcard_bind_allows_ip_literals_but_not_names(tmp_path: Path):
    policy = HostPolicy.from_config(load_config(None, env={}, overrides={"host": "0.0.0.0"}))
    assert policy.refusal("192.168.1.5:7421", "http://192.168.1.5:7421") is None
    assert policy.refusal("[fe80::1]:7421", None) is None
    assert policy.refusal("rebind.attacker.example", None) is not None


def test_star_turns_the_checks_off():
    assert HostPolicy.of(["*"]).refusal("anything.example", "http://other.example") is None


@pytest.mark.parametrize("value", [999, 60_001])
def test_mcp_wait_cap_stays_within_the_client_timeout(tmp_path: Path, value: int):
    from coral.config import ConfigError

    with pytest.raises(ConfigError, match="mcp_max_wait_ms"):
        load_config(None, env={"CORAL_MCP_MAX_WAIT_MS": str(value)}, overrides={})
