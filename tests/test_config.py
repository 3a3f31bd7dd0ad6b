"""Config precedence: file < environment < flags."""

import pytest

from coral.config import ConfigError, load_config


def test_defaults_bind_localhost(tmp_path):
    cfg = load_config(env={}, overrides={"data_dir": tmp_path})
    assert (cfg.host, cfg.grpc_port, cfg.http_port) == ("127.0.0.1", 7420, 7421)
    assert cfg.db_path == tmp_path / "coral.db"


def test_flags_beat_environment_beat_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("grpc_port = 1000\nhttp_port = 1001\nlog_level = 'debug'\n")
    env = {"CORAL_HTTP_PORT": "2001", "CORAL_LOG_LEVEL": "warning"}
    cfg = load_config(path, env=env, overrides={"log_level": "error", "grpc_port": None})
    assert (cfg.grpc_port, cfg.http_port, cfg.log_level) == (1000, 2001, "error")


def test_bootstrap_peers_from_environment_are_split(tmp_path):
    cfg = load_config(env={"CORAL_BOOTSTRAP_PEERS": "a:1, b:2"}, overrides={"data_dir": tmp_path})
    assert cfg.bootstrap_peers == ["a:1", "b:2"]


def test_unknown_key_is_refused(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("grpc_prot = 1\n")
    with pytest.raises(ConfigError, match="grpc_prot"):
        load_config(path, env={})


def test_broken_toml_is_refused(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("grpc_port = \n")
    with pytest.raises(ConfigError):
        load_config(path, env={})
