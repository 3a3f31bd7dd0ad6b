"""ModelAgent, the registry manifests and serve settings, without a node.

The agents' message handlers are driven directly with real signed messages;
the TRM agent runs the shipped checkpoint (one torch thread) so batched
answers can be compared with one-at-a-time answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coral.protocol.identity import Identity
from coral.protocol.message import DataPart, FilePart, Part, TextPart
from coral_sdk.agent import Incoming
from coral_sdk.agents.echo_agent import EchoAgent
from coral_sdk.agents.trm_agent import TrmAgent
from coral_sdk.client import CoralClient
from coral_sdk.model_agent import ReplicaShard, request_payload
from coral_sdk.registry import (
    ManifestError,
    list_manifests,
    load_manifest,
    option_env_var,
    parse_manifest,
)
from coral_sdk.serve import resolve_settings, settings_env

NODE = "http://127.0.0.1:9"  # never contacted: these tests call handlers directly
SENDER = CoralClient(NODE, Identity.generate())


def incoming(*parts: Part, seq: int = 1) -> Incoming:
    message = SENDER.build_message(thread="thread-1", parts=parts, mentions=())
    return Incoming(message, "thread-1", seq, seq, mentioned=True, system=False)


#: The 4x4 checkpoint: these tests send 4x4 puzzles (the default agent serves 6x6).
SUDOKU4 = {
    "checkpoint": str(
        Path(__file__).resolve().parents[2] / "sdk/coral_sdk/models/trm/checkpoints/sudoku4"
    )
}


def puzzles(count: int, seed: int = 7) -> list[dict[str, Any]]:
    from coral_sdk.models.trm.tasks import sudoku

    rng = np.random.default_rng(seed)
    return [
        {"task": "sudoku4", "grid": sudoku.generate_puzzle(4, 6, rng)[0].tolist()}
        for _ in range(count)
    ]


@pytest.fixture
def torch_one_thread() -> Any:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# -- registry manifests -------------------------------------------------------


def test_every_shipped_manifest_validates_and_has_a_runnable_module() -> None:
    shipped = list_manifests()
    assert {"trm", "opentslm", "agentflow", "echo"} <= set(shipped)
    for name, path in shipped.items():
        manifest = load_manifest(path)
        assert manifest.agent.name == name
        runtime = manifest.runtimes.executable
        assert runtime is not None and runtime.module is not None
        __import__(runtime.module)
        manifest.resolve_options(env={})  # defaults type-check
    trm = load_manifest("trm").agent_manifest()
    assert trm.prices[0].capability == "puzzle.sudoku6" and trm.prices[0].amount == 2


@pytest.mark.parametrize(
    ("patch", "named"),
    [
        ({"agent": {"name": "Bad Name"}}, "agent.name"),
        ({"agent": {"name": "x", "colour": "red"}}, "agent.colour"),
        ({"options": {"n": {"type": "int", "default": "many"}}}, "options.n"),
        ({"options": {"n": {"type": "complex"}}}, "options.n.type"),
        ({"runtimes": {"executable": {}}}, "runtimes.executable"),
        ({"runtimes": {"executable": {"module": "m", "command": ["c"]}}}, "runtimes.executable"),
        ({"marketplace": {"prices": [{"capability": "x", "amount": -1}]}}, "marketplace.prices.0"),
        ({"serve": {"replicas": 0}}, "serve.replicas"),
    ],
)
def test_bad_manifests_are_refused_naming_the_bad_key(patch: dict[str, Any], named: str) -> None:
    data: dict[str, Any] = {"agent": {"name": "x"}, **patch}
    with pytest.raises(ManifestError) as info:
        parse_manifest(data, "test.toml")
    assert named in str(info.value)


def test_a_bad_checkpoint_option_is_named(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=re.escape("options.checkpoint:")):
        TrmAgent(NODE, key_file=tmp_path / "t.key", options={"checkpoint": str(tmp_path)})


def test_unreadable_or_missing_manifests_raise_manifest_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[agent\nname=")
    with pytest.raises(ManifestError, match=re.escape("broken.toml")):
        load_manifest(broken)
    with pytest.raises(ManifestError, match="no such manifest"):
        load_manifest("no-such-agent")


def test_options_come_from_overrides_then_env_then_defaults() -> None:
    manifest = parse_manifest(
        {
            "agent": {"name": "x"},
            "options": {
                "size": {"type": "int", "default": 3},
                "fast": {"type": "bool", "default": False},
                "token": {"type": "secret", "required": True},
            },
        }
    )
    env = {option_env_var("fast"): "true", option_env_var("token"): "s3"}
    assert manifest.resolve_options({"size": 5}, env) == {"size": 5, "fast": True, "token": "s3"}
    with pytest.raises(ManifestError, match=re.escape("options.token: required")):
        manifest.resolve_options({}, {})
    with pytest.raises(ManifestError, match=re.escape("options.size: expected int")):
        manifest.resolve_options({"size": "big"}, env)
    with pytest.raises(ManifestError, match=re.escape("options.colour: not declared")):
        manifest.resolve_options({"colour": 1}, env)


@given(st.integers(-(2**40), 2**40), st.booleans(), st.text(max_size=20))
def test_option_values_survive_the_trip_through_child_env(
    number: int, flag: bool, text: str
) -> None:
    manifest = parse_manifest(
        {
            "agent": {"name": "x"},
            "options": {
                "n": {"type": "int", "default": 0},
                "f": {"type": "bool", "default": False},
                "t": {"type": "string", "default": ""},
            },
        }
    )
    values = {"n": number, "f": flag, "t": text.replace("\x00", "")}
    settings_ = resolve_settings(manifest, env={}, option_overrides=values)
    child = settings_env(settings_)
    assert resolve_settings(manifest, env=child).options == values


def test_connection_settings_prefer_flag_then_env_then_manifest(tmp_path: Path) -> None:
    manifest = parse_manifest(
        {"agent": {"name": "x"}, "serve": {"node_url": "http://manifest", "key_file": "m.key"}}
    )
    env = {"CORAL_NODE_URL": "http://env", "CORAL_AGENT_KEY_FILE": str(tmp_path / "e.key")}
    assert resolve_settings(manifest, node_url="http://flag", env=env).node_url == "http://flag"
    from_env = resolve_settings(manifest, env=env)
    assert from_env.node_url == "http://env" and from_env.key_file == tmp_path / "e.key"
    from_manifest = resolve_settings(manifest, env={})
    assert from_manifest.node_url == "http://manifest" and from_manifest.key_file.name == "m.key"
    bare = resolve_settings(parse_manifest({"agent": {"name": "x"}}), env={})
    assert bare.node_url == "http://127.0.0.1:7421" and bare.key_file.name == "x.key"
    replica = resolve_settings(
        manifest, env={"CORAL_REPLICA_INDEX": "2", "CORAL_REPLICA_COUNT": "3"}
    )
    assert replica.replica == ReplicaShard(2, 3)
    with pytest.raises(ManifestError, match="CORAL_REPLICA"):
        resolve_settings(manifest, env={"CORAL_REPLICA_INDEX": "3", "CORAL_REPLICA_COUNT": "3"})


# -- replicas -----------------------------------------------------------------


@settings(max_examples=50)
@given(st.lists(st.text(min_size=1, max_size=30), max_size=30), st.integers(1, 8))
def test_each_message_is_owned_by_exactly_one_replica(ids: list[str], count: int) -> None:
    shards = [ReplicaShard(i, count) for i in range(count)]
    for message_id in ids:
        assert sum(shard.owns(message_id) for shard in shards) == 1


def test_replicas_keep_separate_cursor_files(tmp_path: Path) -> None:
    key = tmp_path / "a.key"
    first = EchoAgent(NODE, key_file=key, replica=ReplicaShard(0, 2))
    second = EchoAgent(NODE, key_file=key, replica=ReplicaShard(1, 2))
    assert first.did == second.did
    assert first._cursor_path() != second._cursor_path()


# -- requests and replies -----------------------------------------------------


def test_request_payload_prefers_data_then_file_then_json_text() -> None:
    assert request_payload(incoming(TextPart(text="hi"), DataPart(data={"a": 1}))) == {"a": 1}
    assert request_payload(incoming(TextPart(text='{"b": 2}'))) == {"b": 2}
    assert request_payload(incoming(TextPart(text="{not json"))) == "{not json"
    with_file = incoming(
        TextPart(text="what activity?"),
        FilePart(uri="file:///tmp/series%20one.npy", media_type="application/x-npy"),
    )
    assert request_payload(with_file) == {
        "question": "what activity?",
        "file": "/tmp/series one.npy",
    }


async def test_malformed_requests_get_error_replies_not_silence(
    tmp_path: Path, torch_one_thread: None
) -> None:
    agent = TrmAgent(NODE, key_file=tmp_path / "trm.key", options=SUDOKU4)
    await agent.continuous.start()
    try:
        cases = {
            "no_grid": DataPart(data={"task": "sudoku4"}),
            "bad_cell": DataPart(data={"task": "sudoku4", "grid": [[9, 0, 0, 0]] * 4}),
            "wrong_task": DataPart(data={"task": "maze", "grid": [[0]]}),
            "prose": TextPart(text="please solve my sudoku"),
        }
        replies = {name: await agent.on_mention(incoming(part)) for name, part in cases.items()}
    finally:
        await agent.continuous.aclose()
    assert replies["no_grid"] == {
        "error": {"reason": "malformed_puzzle", "detail": "missing 'grid'"}
    }
    assert "cell (0, 0) = 9" in replies["bad_cell"]["error"]["detail"]
    assert replies["wrong_task"]["error"]["reason"] == "unsupported_task"
    assert replies["prose"]["error"]["reason"] == "malformed_puzzle"
    assert not agent.model_loaded  # refusals never load the weights
    assert "malformed_puzzle" in agent.summarize(replies["no_grid"])


async def test_continuously_batched_answers_equal_one_at_a_time_answers(
    tmp_path: Path, torch_one_thread: None
) -> None:
    requests = puzzles(12)
    agent = TrmAgent(NODE, key_file=tmp_path / "trm.key", options={**SUDOKU4, "device": "cpu"})
    await agent.continuous.start()
    try:
        single = [await agent.on_mention(incoming(DataPart(data=r))) for r in requests]
        steps_alone = agent.continuous.stats().steps
        # A malformed request in the same burst is refused alone.
        burst = [incoming(DataPart(data=r), seq=i) for i, r in enumerate(requests)]
        burst.append(incoming(DataPart(data={"task": "sudoku4", "grid": [[1]]})))
        batched = await asyncio.gather(*(agent.on_mention(m) for m in burst))
    finally:
        await agent.continuous.aclose()
    assert batched[:-1] == single
    assert batched[-1]["error"]["reason"] == "malformed_puzzle"
    stats = agent.continuous.stats()
    assert stats.items == 2 * len(requests)
    assert stats.steps - steps_alone < len(requests)  # the burst shared supervision steps
    assert all(
        set(r) == {"solution", "supervision_steps", "halt_confidence", "verified"} for r in single
    )
    assert all(r["verified"] for r in single)  # the 4x4 model solves them; verified = valid
    health = agent.health()
    assert health["status"] == "ok" and health["device"] == "cpu"
    assert health["continuous"]["puzzles_answered"] == 2 * len(requests)
    assert health["continuous"]["mean_batch_size"] > 1
    metrics = agent.metrics_text().decode()
    assert 'coral_model_agent_requests_total{agent="trm",outcome="answered"} 24.0' in metrics
    assert 'coral_model_agent_requests_total{agent="trm",outcome="rejected"} 1.0' in metrics


async def test_inference_failures_become_error_replies(tmp_path: Path) -> None:
    class Broken(EchoAgent):
        def infer_batch(self, requests: list[Any]) -> list[Any]:
            raise RuntimeError("weights are corrupt")

    agent = Broken(NODE, key_file=tmp_path / "b.key")
    await agent.batcher.start()
    try:
        reply = await agent.on_mention(incoming(TextPart(text="hello")))
    finally:
        await agent.batcher.aclose()
    assert reply == {
        "error": {"reason": "inference_failed", "detail": "RuntimeError: weights are corrupt"}
    }


async def test_metrics_port_serves_prometheus_text_and_health(tmp_path: Path) -> None:
    agent = EchoAgent(NODE, key_file=tmp_path / "e.key", metrics_port=0)
    await agent.batcher.start()
    await agent._start_metrics(0)
    try:
        await agent.on_mention(incoming(TextPart(text="x")))
        assert agent.metrics_url is not None
        async with aiohttp.ClientSession() as http:
            async with http.get(agent.metrics_url + "/metrics") as resp:
                assert resp.status == 200
                assert "coral_batcher_batches_total" in await resp.text()
            async with http.get(agent.metrics_url + "/healthz") as resp:
                health = json.loads(await resp.text())
    finally:
        await agent.batcher.aclose()
        assert agent._metrics_runner is not None
        await agent._metrics_runner.cleanup()
    assert health["status"] == "ok" and health["items"] == 1 and health["device"] is None
    assert os.getpid() > 0


def test_serve_reports_bad_manifests_and_names_with_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from coral_sdk.serve import serve_manifest

    assert serve_manifest(tmp_path / "missing.toml") == 2
    assert "no such manifest" in capsys.readouterr().err
    monkeypatch.setenv("CORAL_AGENT_NAME", "Not Valid")
    monkeypatch.setenv("CORAL_AGENT_KEY_FILE", str(tmp_path / "e.key"))
    assert serve_manifest("echo", node_url=NODE) == 2
    assert "name" in capsys.readouterr().err
