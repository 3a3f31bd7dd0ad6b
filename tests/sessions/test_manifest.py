"""coral-agent.toml editions 3 and 4, the registry scan, and option encodings."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import pytest

from coral.sessions.manifest import InvalidManifest, load_manifest
from coral.sessions.options import (
    InvalidOption,
    OptionSpec,
    check_value,
    env_value,
    file_values,
    parse_option,
)
from coral.sessions.registry import AgentRegistry

FULL_EDITION_4 = """
edition = 4
unknown_key = false

[agent]
capabilities = ["resources", "tool_refreshing"]
name = "edition-4"
version = "0.4.0"
description = "A description of this agent, designed for LLM consumption"
summary = "A short summary"
readme = "A readme"
keywords = ["test", "debug"]

[agent.license]
type = "text"
text = "an example license"

[agent.links]
github = "https://example.org/repo"

[runtimes.docker]
transport = "streamable_http"
image = "myuser/myimage"
command = ["/bin/sh", "-c", "echo hello world"]

[runtimes.executable]
transport = "sse"
path = "my-agent"
arguments = ["--some-argument"]

[runtimes.prototype]
iterations = 20
client = "openai"

[[llm.proxies]]
name = "MAIN"
format.type = "OpenAI"
models = ["gpt-4.1"]

[options]
DEFAULT_I8 = { type = "i8", default = -42 }
DEFAULT_U64 = { type = "u64", default = "18446744073709" }
DEFAULT_F32 = { type = "f32", default = 3.14 }
DEFAULT_BOOL = { type = "bool", default = true }
DEFAULT_BLOB = { type = "blob", default = "aGVsbG8gd29ybGQ=" }
DEFAULT_LIST_STRING = { type = "list[string]", default = ["foo", "bar", "baz"] }
OPTIONAL_STRING = { type = "string" }

[options.FULL_STRING_OPTION]
type = "string"
required = true
transport = "fs"
display.label = "Full string option"
display.description = "An example of a string option"

[marketplace.pricing]
currency = "USD"
"""

EDITION_3 = """
edition = 3

[agent]
name = "old-style"
version = "1.0.0"
description = "written for coral-server 1.1"

[runtimes.executable]
path = "run.sh"

[options.API_KEY]
type = "secret"
description = "a key"

[options.TEMPERATURE]
type = "number"
default = 0.5
"""


def write(tmp_path: Path, folder: str, text: str) -> Path:
    path = tmp_path / folder / "coral-agent.toml"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


def test_edition_4_keeps_what_a_node_needs_and_tolerates_the_rest(tmp_path: Path):
    agent = load_manifest(write(tmp_path, "a", FULL_EDITION_4))
    assert (agent.edition, agent.name, agent.version) == (4, "edition-4", "0.4.0")
    assert agent.summary == "A short summary" and agent.readme == "A readme"
    assert agent.license == {"type": "text", "text": "an example license"}
    assert agent.runtimes == ["executable", "docker"]
    assert agent.executable is not None and agent.executable.transport == "sse"
    assert agent.executable.arguments == ("--some-argument",)
    assert agent.docker is not None and agent.docker.command[0] == "/bin/sh"
    assert agent.options["DEFAULT_I8"].default == -42
    full = agent.options["FULL_STRING_OPTION"]
    assert (full.required, full.transport, full.description) == (
        True,
        "fs",
        "An example of a string option",
    )
    assert agent.path == (tmp_path / "a").resolve()


def test_edition_3_option_spellings_are_read(tmp_path: Path):
    agent = load_manifest(write(tmp_path, "b", EDITION_3))
    assert agent.options["API_KEY"].type == "string" and agent.options["API_KEY"].secret
    assert agent.options["TEMPERATURE"].type == "f64"
    assert agent.executable is not None and agent.executable.transport == "streamable_http"


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ('edition = 2\n[agent]\nname = "a"\nversion = "1.0.0"', "edition must be 3..4"),
        ('edition = 4\n[agent]\nname = "Bad Name"\nversion = "1.0.0"', "must match"),
        ('edition = 4\n[agent]\nname = "a"\nversion = "one"', "not a semantic version"),
        ('edition = 4\n[agent]\nname = "a"\nversion = "1.0.0"', "at least one runtime"),
        (
            'edition = 4\n[agent]\nname = "a"\nversion = "1.0.0"\n[runtimes.executable]\n'
            'path = "x"\n[options]\nN = { type = "i8", default = 300 }',
            "default 300 is not a valid i8",
        ),
        ('edition = 4\n[agent]\nname = "a"\nversion = "1.0.0', "not valid TOML"),
    ],
)
def test_bad_manifests_say_why(tmp_path: Path, text: str, detail: str):
    with pytest.raises(InvalidManifest) as caught:
        load_manifest(write(tmp_path, "c", text))
    assert detail in caught.value.detail


def test_one_bad_toml_is_skipped_and_reported_never_emptying_the_registry(tmp_path: Path):
    write(tmp_path, "good", FULL_EDITION_4)
    write(tmp_path, "old", EDITION_3)
    bad = write(tmp_path, "bad", "edition = 4\n[agent\n")
    registry = AgentRegistry.scan([str(tmp_path / "*")])
    assert sorted(registry.agents) == [("edition-4", "0.4.0"), ("old-style", "1.0.0")]
    assert len(registry.problems) == 1 and str(bad) in registry.problems[0]
    catalog = registry.catalog()[0]
    assert {a["name"] for a in catalog["agents"]} == {"edition-4", "old-style"}


def test_option_values_must_carry_the_declared_type_and_fit_it():
    spec = parse_option("N", {"type": "u8"}, 4)
    assert check_value(spec, {"type": "u8", "value": 255}) == 255
    for bad in (
        {"type": "i8", "value": 1},
        {"type": "u8", "value": 256},
        {"type": "u8", "value": True},
        {"value": 1},
    ):
        with pytest.raises(InvalidOption):
            check_value(spec, bad)
    blob = parse_option("B", {"type": "blob"}, 4)
    with pytest.raises(InvalidOption):
        check_value(blob, {"type": "blob", "value": "not base64!"})


def test_env_encodings_follow_coral_server():
    def enc(kind: str, value: object, **extra: object) -> str:
        return env_value(OptionSpec("X", kind, **extra), value)  # type: ignore[arg-type]

    assert enc("bool", True) == "1" and enc("bool", False) == "0"
    assert enc("i32", -5) == "-5"
    assert enc("f64", 2.5) == "2.5" and enc("f32", 1) == "1.0"
    assert enc("list[i16]", [1, 2, 3]) == "1,2,3"
    assert enc("string", "a,b", base64=True) == base64.b64encode(b"a,b").decode()
    assert enc("list[string]", ["x", "y"]) == "x,y"
    assert enc("blob", "aGk=") == "aGk="
    assert enc("u64", "18446744073709551615") == "18446744073709551615"


def test_fs_option_files_hold_raw_big_endian_values():
    assert file_values(OptionSpec("X", "i16"), -2) == [b"\xff\xfe"]
    assert file_values(OptionSpec("X", "f64"), 1.5) == [struct.pack(">d", 1.5)]
    assert file_values(OptionSpec("X", "list[string]"), ["a", "b"]) == [b"a", b"b"]
    assert file_values(OptionSpec("X", "blob"), "aGk=") == [b"hi"]
    assert file_values(OptionSpec("X", "bool"), True) == [b"\x01"]


def test_the_sdk_reads_edition_4_keywords_as_capabilities_and_coral_server_option_vars():
    from coral_sdk.registry import load_manifest as sdk_load

    trm = sdk_load("trm")
    assert trm.edition == 4
    assert trm.agent.capabilities == ("puzzle.sudoku6", "reasoning.recursive")
    runtime = trm.runtimes.executable
    assert runtime is not None and runtime.module == "coral_sdk.agents.trm_agent"
    launched = {"CORAL_RUNTIME_ID": "executable", "max_batch_size": "8", "until_valid": "0"}
    options = trm.resolve_options(env=launched)
    assert (options["max_batch_size"], options["until_valid"]) == (8, False)
    assert trm.resolve_options(env={"max_batch_size": "8"})["max_batch_size"] == 64
