"""deploy/ as far as this machine can check it without Docker or Kubernetes.

YAML and unit files are parsed and held to what an operator relies on (non-root,
probes, ports, volumes, peers); every configuration they carry is loaded by
the node's own Config; the container entrypoint is run for real.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from coral.config import Config, load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            joined.append(current)
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined]


def test_dockerfile_is_slim_non_root_and_health_checked():
    steps = dockerfile_instructions()
    kinds = [kind for kind, _ in steps]
    assert steps[0] == ("FROM", "python:3.11-slim")
    user = [args for kind, args in steps if kind == "USER"]
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    # Nothing runs as root after the switch to the unprivileged user.
    assert "RUN" not in kinds[kinds.index("USER") :]
    [health] = [args for kind, args in steps if kind == "HEALTHCHECK"]
    assert "/healthz" in health and "CMD" in health
    [expose] = [args for kind, args in steps if kind == "EXPOSE"]
    assert set(expose.split()) == {"7420", "7421"}
    [entry] = [args for kind, args in steps if kind == "ENTRYPOINT"]
    assert json.loads(entry) == ["/usr/local/bin/coral-entrypoint"]
    copies = " ".join(args for kind, args in steps if kind == "COPY")
    assert "deploy/entrypoint.sh /usr/local/bin/coral-entrypoint" in copies
    env = " ".join(args for kind, args in steps if kind == "ENV")
    assert "CORAL_HOST=0.0.0.0" in env and "CORAL_DATA_DIR=/var/lib/coral" in env


def load_compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def test_compose_runs_three_nodes_on_postgres_bootstrapping_from_a():
    services = load_compose()["services"]
    assert set(services) == {"postgres", "node-a", "node-b", "node-c"}
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    init_sql = services["postgres"]["volumes"][1].split(":")[0]
    assert (DEPLOY / init_sql).exists()
    databases = set()
    for name in ("node-a", "node-b", "node-c"):
        node = services[name]
        assert node["build"]["dockerfile"] == "deploy/Dockerfile"
        assert node["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "/healthz" in " ".join(node["healthcheck"]["test"])
        assert node["volumes"][0].endswith(":/var/lib/coral")
        env = {**node["environment"], "CORAL_DATA_DIR": "/var/lib/coral", "CORAL_HOST": "0.0.0.0"}
        cfg = load_config(None, env=env)  # the node accepts every variable compose sets
        assert cfg.database_url.startswith("postgresql://") and cfg.advertise_host == name
        # Every store, federation's included, lives in the node's own database.
        assert cfg.database_stores == "all" and cfg.stores_on_postgres
        databases.add(cfg.database_url.rsplit("/", 1)[1])
        for port in node["ports"]:
            assert port.startswith("127.0.0.1:"), "published ports stay on the host's loopback"
        if name != "node-a":
            assert cfg.bootstrap_peers == ["node-a:7420"]
            assert node["depends_on"]["node-a"]["condition"] == "service_healthy"
    assert len(databases) == 3
    created = (DEPLOY / "postgres-init.sql").read_text()
    assert all(f"CREATE DATABASE {db};" in created for db in databases)


def k8s_objects() -> dict[str, dict[str, Any]]:
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert {"apiVersion", "kind", "metadata"} <= set(doc), path
            objects[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return objects


def test_kubernetes_statefulset_has_volume_probes_and_non_root():
    objects = k8s_objects()
    sts = objects["StatefulSet/coral-node"]["spec"]
    pod = sts["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 7420, "http": 7421}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["livenessProbe"]["grpc"]["port"] == ports["grpc"]
    [claim] = sts["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/var/lib/coral"
    assert sts["serviceName"] == "coral-node"
    assert objects["Service/coral-node"]["spec"]["clusterIP"] == "None"
    for service in ("Service/coral-node", "Service/coral-node-api"):
        target = {p["targetPort"] for p in objects[service]["spec"]["ports"]}
        assert target == set(ports)
        assert objects[service]["spec"]["selector"] == sts["selector"]["matchLabels"]


def test_kubernetes_config_map_is_a_valid_node_config():
    objects = k8s_objects()
    raw = objects["ConfigMap/coral-node-config"]["data"]["config.toml"]
    cfg = Config.model_validate(tomllib.loads(raw))
    sts = objects["StatefulSet/coral-node"]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in sts["containers"][0]["env"]}
    mounts = {m["name"]: m["mountPath"] for m in sts["containers"][0]["volumeMounts"]}
    assert env["CORAL_CONFIG"] == mounts["config"] + "/config.toml"
    assert str(cfg.data_dir) == mounts["data"] and cfg.host == "0.0.0.0"
    assert (cfg.grpc_port, cfg.http_port) == (7420, 7421)
    assert cfg.bootstrap_peers and cfg.bootstrap_peers[0].startswith("coral-node-0.coral-node")
    assert cfg.dev_mode is False


def test_systemd_unit_runs_the_node_unprivileged():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((DEPLOY / "systemd" / "coral-node.service").read_text())
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    assert service["User"] not in {"root", "0"} and service["NoNewPrivileges"] == "true"
    assert "coral-node start" in service["ExecStart"]
    data_dir = service["ExecStart"].split("--data-dir", 1)[1].split()[0]
    assert data_dir == "/var/lib/" + service["StateDirectory"]
    assert service["KillSignal"] == "SIGTERM" and service["Restart"] == "on-failure"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in unit["Unit"]["After"]


def test_entrypoint_defaults_to_all_interfaces():
    script = (DEPLOY / "entrypoint.sh").read_text()
    assert script.startswith("#!/bin/sh")
    assert ': "${CORAL_HOST:=0.0.0.0}"' in script and 'exec "$CORAL_NODE_BIN" start' in script
    assert os.access(DEPLOY / "entrypoint.sh", os.X_OK)


def test_entrypoint_starts_a_healthy_node_and_stops_on_sigterm(tmp_path):
    if shutil.which("sh") is None:
        pytest.skip("no POSIX sh on this machine")
    data = tmp_path / "data" / "nested"
    # A coral-node on PATH that is this interpreter's coral (the console script may be absent).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "coral-node"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m coral "$@"\n')
    shim.chmod(0o755)
    env = {
        **os.environ,
        "CORAL_DATA_DIR": str(data),
        # Any free port, and loopback only: this runs on a shared test machine.
        "CORAL_HOST": "127.0.0.1",
        "CORAL_GRPC_PORT": "0",
        "CORAL_HTTP_PORT": "0",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("CORAL_LOG_JSON", None)
    env.pop("CORAL_NODE_BIN", None)
    local = DEPLOY / "entrypoint.sh"
    log = open(tmp_path / "node.log", "w")
    proc = subprocess.Popen(["sh", str(local)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        runtime = data / "node.json"
        deadline = time.monotonic() + 30
        while not runtime.exists():
            assert proc.poll() is None, (tmp_path / "node.log").read_text()
            assert time.monotonic() < deadline, "node did not start"
            time.sleep(0.1)
        info = json.loads(runtime.read_text())
        assert info["pid"] == proc.pid  # exec: the node replaced the shell
        with urllib.request.urlopen(info["http_address"] + "/healthz", timeout=5) as resp:
            assert json.loads(resp.read()) == {"status": "ok"}
        assert (data / "keys" / "node.key").stat().st_mode & 0o077 == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
    output = (tmp_path / "node.log").read_text()
    assert "stopped cleanly" in output
    # CORAL_LOG_JSON defaults to true in the container: log lines are JSON objects.
    assert any(line.startswith("{") and '"level"' in line for line in output.splitlines())


# ---------------------------------------------------------------------------
# Replicas: one logical node, two processes, one PostgreSQL (static checks only:
# there is no Docker daemon or Kubernetes cluster on the test machine, so these
# files are parsed and cross-checked, never run).


def load_replicas_compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.replicas.yaml").read_text()))


def haproxy_sections() -> dict[str, list[str]]:
    """``"backend replicas_grpc"`` -> its directive lines, comments dropped."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in (DEPLOY / "haproxy.cfg").read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            current = sections.setdefault(" ".join(line.split()), [])
        else:
            current.append(" ".join(line.split()))
    return sections


def test_replicas_compose_shares_database_and_key_behind_a_balancer():
    services = load_replicas_compose()["services"]
    assert set(services) == {"postgres", "replica-1", "replica-2", "lb"}
    replicas = ("replica-1", "replica-2")
    configs = []
    key_volumes = set()
    for name in replicas:
        node = services[name]
        assert node["build"]["dockerfile"] == "deploy/Dockerfile"
        assert node["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "/healthz" in " ".join(node["healthcheck"]["test"])
        env = {**node["environment"], "CORAL_DATA_DIR": "/var/lib/coral", "CORAL_HOST": "0.0.0.0"}
        cfg = load_config(None, env=env)  # the node accepts every variable compose sets
        assert cfg.database_url.startswith("postgresql://") and cfg.database_stores == "all"
        configs.append(cfg)
        mounts = dict(volume.split(":", 1) for volume in node["volumes"])
        data_volume = {v for v, target in mounts.items() if target == "/var/lib/coral"}
        assert len(data_volume) == 1, "each replica keeps its own data dir"
        key_volumes |= {v for v, target in mounts.items() if target == str(cfg.keys_dir)}
        assert "ports" not in node, "clients reach the replicas only through the balancer"
    # One database and one key volume for both: the replicas are one node.
    assert configs[0].database_url == configs[1].database_url
    assert len(key_volumes) == 1 and key_volumes <= set(load_replicas_compose()["volumes"])
    # The image owns keys/ so the named volume mounted there is the node user's.
    runs = " ".join(args for kind, args in dockerfile_instructions() if kind == "RUN")
    assert "mkdir -p /var/lib/coral/keys" in runs and "coral:coral /var/lib/coral " in runs
    # The second replica starts once the first has created the shared key.
    assert services["replica-2"]["depends_on"]["replica-1"]["condition"] == "service_healthy"
    db = configs[0].database_url.rsplit("/", 1)[1]
    assert services["postgres"]["environment"]["POSTGRES_DB"] == db
    lb = services["lb"]
    assert all(lb["depends_on"][name]["condition"] == "service_healthy" for name in replicas)
    [conf] = [v.split(":")[0] for v in lb["volumes"] if "haproxy.cfg" in v]
    assert (DEPLOY / conf).exists()
    published = {port.split(":")[2] for port in lb["ports"]}
    assert {str(configs[0].grpc_port), str(configs[0].http_port)} <= published
    assert all(port.startswith("127.0.0.1:") for port in lb["ports"])
    assert configs[0].advertise_host == "lb"


def test_haproxy_routes_grpc_as_h2c_and_http_to_both_replicas_with_health_checks():
    sections = haproxy_sections()
    compose = load_replicas_compose()["services"]
    cfg = load_config(None, env={**compose["replica-1"]["environment"], "CORAL_DATA_DIR": "/x"})
    grpc, http = str(cfg.grpc_port), str(cfg.http_port)
    assert "bind :7420 proto h2" in sections["frontend grpc"] and grpc == "7420"
    assert "bind :7421" in sections["frontend http"] and http == "7421"
    assert "default_backend replicas_grpc" in sections["frontend grpc"]
    assert "default_backend replicas_http" in sections["frontend http"]
    for backend, port in (("backend replicas_grpc", grpc), ("backend replicas_http", http)):
        lines = sections[backend]
        assert "option httpchk GET /healthz" in lines
        servers = [line.split() for line in lines if line.startswith("server ")]
        assert {s[1] for s in servers} == {"replica-1", "replica-2"}
        for server in servers:
            assert server[2] == f"{server[1]}:{port}" and "check" in server
            if port == grpc:
                # gRPC to the replica is HTTP/2 cleartext; health is asked on the HTTP port.
                assert server[server.index("proto") + 1] == "h2"
                assert server[server.index("port") + 1] == http
                assert server[server.index("check-proto") + 1] == "h1"


def k8s_replica_objects() -> dict[str, dict[str, Any]]:
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted((DEPLOY / "k8s" / "replicas").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert {"apiVersion", "kind", "metadata"} <= set(doc), path
            objects[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return objects


def test_kubernetes_replicas_deployment_shares_key_and_database():
    objects = k8s_replica_objects()
    deployment = objects["Deployment/coral-node-replicas"]["spec"]
    assert deployment["replicas"] == 2
    pod = deployment["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 7420, "http": 7421}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = objects["Service/coral-node-replicas"]["spec"]
    assert {p["targetPort"] for p in service["ports"]} == set(ports)
    assert service["selector"] == deployment["selector"]["matchLabels"]
    assert deployment["selector"]["matchLabels"].items() <= pod_labels(deployment).items()

    # Configuration: the ConfigMap plus the environment load as one valid Config.
    secret = objects["Secret/coral-node-replicas-secrets"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config_map = objects[f"ConfigMap/{volumes['config']['configMap']['name']}"]
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"]
            env[item["name"]] = secret["stringData"][ref["key"]]
    assert env["CORAL_CONFIG"] == mounts["config"] + "/config.toml"
    cfg = Config.model_validate(
        {
            **tomllib.loads(config_map["data"]["config.toml"]),
            "database_url": env.pop("CORAL_DATABASE_URL"),
        }
    )
    assert cfg.database_url.startswith("postgresql://") and cfg.database_stores == "all"
    assert str(cfg.data_dir) == mounts["data"] and cfg.host == "0.0.0.0"
    assert (cfg.grpc_port, cfg.http_port) == (7420, 7421) and cfg.dev_mode is False
    assert cfg.advertise_host and cfg.advertise_host.startswith("coral-node-replicas.")

    # The key: every pod copies the same Secret into its keys dir before the node starts.
    assert volumes["secrets"]["secret"]["secretName"] == secret["metadata"]["name"]
    assert {i["key"] for i in volumes["secrets"]["secret"]["items"]} >= {"node.key"}
    assert "node.key" in secret["stringData"]
    [init] = pod["initContainers"]
    init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert init_mounts["data"] == mounts["data"]
    script = " ".join(init["command"])
    assert f"{init_mounts['secrets']}/node.key {cfg.keys_dir}/node.key" in script
    assert "umask 077" in script


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return dict(deployment["template"]["metadata"]["labels"])
