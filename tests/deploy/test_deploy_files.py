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
