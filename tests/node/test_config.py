"""Config precedence: file < environment < flags."""

import pytest

from coral.config import Config, ConfigError, config_template, load_config


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


def test_public_addresses_come_from_the_environment_and_fill_the_peer_record(tmp_path):
    from coral.node.subsystems.federation import advertised

    env = {"CORAL_PUBLIC_ADDRESSES": "r1:7420, r2:7420"}
    cfg = load_config(env=env, overrides={"data_dir": tmp_path})
    assert cfg.public_addresses == ["r1:7420", "r2:7420"]
    addresses = advertised(cfg, "127.0.0.1:1", "http://127.0.0.1:2")
    assert (addresses.grpc, addresses.grpc_replicas) == ("r1:7420", ("r2:7420",))
    own = advertised(load_config(env={}, overrides={"data_dir": tmp_path}), "h:1", "http://h:2")
    assert (own.grpc, own.grpc_replicas, own.http) == ("h:1", (), "http://h:2")


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


def test_limits_are_set_from_the_environment_over_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[limits]\nmax_parts = 10\nmax_depth = 9\n")
    env = {"CORAL_LIMITS__MAX_DEPTH": "12", "CORAL_LIMITS__MAX_NUMBER_CHARS": "40"}
    cfg = load_config(path, env=env, overrides={"data_dir": tmp_path})
    assert (cfg.limits.max_parts, cfg.limits.max_depth) == (10, 12)
    assert cfg.limits.to_limits().max_number_chars == 40


def test_bad_nested_environment_value_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"limits\.max_parts"):
        load_config(env={"CORAL_LIMITS__MAX_PARTS": "many"}, overrides={"data_dir": tmp_path})
    with pytest.raises(ConfigError, match="limits"):
        load_config(env={"CORAL_LIMITS": "not json"}, overrides={"data_dir": tmp_path})


def test_a_postgresql_url_puts_every_store_there_unless_the_ledger_alone_is_asked(tmp_path):
    def load(**env: str) -> Config:
        return load_config(env=env, overrides={"data_dir": tmp_path})

    assert not load().stores_on_postgres  # SQLite: database_stores does not matter
    assert not load(CORAL_DATABASE_STORES="all").stores_on_postgres
    on_pg = load(CORAL_DATABASE_URL="postgresql://db/coral")
    assert on_pg.database_stores == "all" and on_pg.stores_on_postgres
    ledger_only = load(CORAL_DATABASE_URL="postgres://db/coral", CORAL_DATABASE_STORES="ledger")
    assert ledger_only.database_stores == "ledger" and not ledger_only.stores_on_postgres
    with pytest.raises(ConfigError, match="database_stores"):
        load(CORAL_DATABASE_STORES="most")


def test_config_file_named_by_environment_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(env={"CORAL_CONFIG": str(tmp_path / "missing.toml")})


def test_direct_construction_ignores_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CORAL_HTTP_PORT", "5")
    assert Config(data_dir=tmp_path).http_port == 7421
    assert load_config(overrides={"data_dir": tmp_path}).http_port == 5


def test_template_lists_every_key_at_its_default(tmp_path):
    text = config_template(tmp_path)
    (tmp_path / "config.toml").write_text(text)
    assert load_config(env={}, overrides={"data_dir": tmp_path}) == Config(data_dir=tmp_path)
    for name, field in Config.model_fields.items():
        assert name in text
        for sub in getattr(field.annotation, "model_fields", {}):
            assert f"\n{sub} = " in text or f"\n[{name}.{sub}]" in text
