"""coral-server config.toml reading (CONFIG_FILE_PATH + overrides) and webhook signatures."""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

import pytest

from coral.sessions.config import CoralServerConfigError, load_coral_server_config
from coral.sessions.events import verify_webhook, webhook_headers


def test_config_sections_and_cli_style_overrides(tmp_path: Path):
    path = tmp_path / "config.toml"
    path.write_text(
        '[network]\nbindPort = 5555\nwebhookSecret = "w"\n[auth]\nkeys = ["k1"]\n'
        '[registry]\nlocalAgents = ["agents/*"]\n[session]\ndefaultWaitTimeout = 90000\n'
        "[docker]\nsocket = 'unix:///var/run/docker.sock'\n"
    )
    config = load_coral_server_config(
        {"CONFIG_FILE_PATH": str(path)},
        [
            "--network.bindPort=6000",
            '--auth.keys=["k2","k3"]',
            "--registry.includeCoralHomeAgents=false",
        ],
    )
    assert config.bind_port == 6000 and config.webhook_secret == "w"
    assert config.auth_keys == ("k2", "k3")
    assert config.local_agents == (str(tmp_path / "agents/*"),)
    assert config.include_coral_home_agents is False
    assert config.default_wait_ms == 60_000  # capped at the 60 s maximum wait
    shorter = load_coral_server_config({"CONFIG_FILE_PATH": str(path)}, max_wait_ms=30_000)
    assert (shorter.max_wait_ms, shorter.default_wait_ms) == (30_000, 30_000)


def test_rescan_timer_reads_hoplite_style_durations():
    def rescan(value: str) -> float:
        return load_coral_server_config({}, [f"--registry.localAgentRescanTimer={value}"]).rescan_s

    assert rescan("30s") == 30.0 and rescan("5m") == 300.0 and rescan("PT2S") == 2.0
    assert rescan("250ms") == 0.25 and rescan("1500") == 1.5
    assert load_coral_server_config({}).rescan_s == 0.0
    with pytest.raises(CoralServerConfigError, match="duration"):
        rescan("soon")


def test_no_file_gives_defaults_and_bad_values_name_their_key(tmp_path: Path):
    assert load_coral_server_config({}).bind_port is None
    with pytest.raises(CoralServerConfigError, match="bindPort"):
        load_coral_server_config({}, ["--network.bindPort=99999"])
    with pytest.raises(CoralServerConfigError, match=re.escape("not --section.key=value")):
        load_coral_server_config({}, ["bindPort=1"])
    with pytest.raises(CoralServerConfigError, match="not found"):
        load_coral_server_config({"CONFIG_FILE_PATH": str(tmp_path / "missing.toml")})


def test_webhook_signature_is_coral_servers_plus_a_timestamped_one():
    body = b'{"timestamp":"2026-01-01T00:00:00.000Z"}'
    headers = webhook_headers("secret", body, now_s=1_000_000)
    assert headers["X-Coral-Signature"] == hmac.new(b"secret", body, hashlib.sha256).hexdigest()
    assert verify_webhook("secret", body, headers, now_s=1_000_100)
    assert not verify_webhook("secret", body, headers, now_s=1_000_000 + 301)  # replayed late
    assert not verify_webhook("secret", body + b" ", headers, now_s=1_000_000)
    forged = {**headers, "X-Coral-Timestamp": "1000050"}  # fresh stamp on an old signature
    assert not verify_webhook("secret", body, forged, now_s=1_000_050)


def test_the_example_config_finds_the_two_example_agents():
    from coral.sessions.registry import AgentRegistry

    example = Path(__file__).resolve().parents[2] / "examples" / "coral_server" / "config.toml"
    config = load_coral_server_config({"CONFIG_FILE_PATH": str(example)})
    assert (config.bind_port, config.auth_keys) == (5555, ("dev-key",))
    registry = AgentRegistry.scan(config.local_agents)
    assert sorted(registry.agents) == [("answerer", "0.1.0"), ("asker", "0.1.0")]
    assert registry.problems == []
