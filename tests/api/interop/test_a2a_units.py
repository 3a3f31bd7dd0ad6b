"""Pure pieces of the A2A front door: parts, cards, proxy names, the ASGI bridge."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlsplit

import pytest
from a2a.types import a2a_pb2
from a2a.utils.errors import ContentTypeNotSupportedError, InvalidParamsError
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf import struct_pb2
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from coral.api.a2a.asgi_bridge import asgi_scope, call_asgi
from coral.api.a2a.cards import agent_card, card_json, jwks, key_id, router_card, sign_card
from coral.api.a2a.executor import a2a_parts, coral_parts
from coral.api.a2a.outbound import answer_text, proxy_name
from coral.api.a2a.push import WebhookPolicy
from coral.protocol.agent import AgentManifest, AgentRecord
from coral.protocol.identity import Identity
from coral.protocol.message import (
    DataPart,
    FilePart,
    Message,
    TextPart,
    new_message_id,
    now_ms,
)

NODE = Identity.generate()


def record(name: str) -> AgentRecord:
    agent = Identity.generate()
    return AgentRecord(
        agent=agent.did,
        home_node=NODE.did,
        version=1,
        updated_at=now_ms(),
        manifest=AgentManifest(name=name, description="d", capabilities=("chat",)),
    )


def test_text_and_data_parts_round_trip_between_a2a_and_coral():
    value = struct_pb2.Value()
    value.struct_value.update({"x": 1, "y": ["a"]})
    incoming = a2a_pb2.Message(parts=[a2a_pb2.Part(text="hi"), a2a_pb2.Part(data=value)])
    parts = coral_parts(incoming, 1000)
    assert parts == [TextPart(text="hi"), DataPart(data={"x": 1, "y": ["a"]})]
    message = Message(id=new_message_id(), sender=NODE.did, created_at=now_ms(), parts=tuple(parts))
    back = a2a_parts(message)
    assert back[0].text == "hi" and back[1].data == value


def test_small_raw_parts_become_data_uri_files_and_big_ones_are_refused():
    parts = coral_parts(
        a2a_pb2.Message(parts=[a2a_pb2.Part(raw=b"\x00\x01", media_type="image/png")]), 1000
    )
    assert parts == [FilePart(uri="data:image/png;base64,AAE=", media_type="image/png")]
    with pytest.raises(ContentTypeNotSupportedError):
        coral_parts(a2a_pb2.Message(parts=[a2a_pb2.Part(raw=b"\x00" * 2000)]), 10_000)


def test_empty_and_oversized_parts_are_refused():
    with pytest.raises(InvalidParamsError):
        coral_parts(a2a_pb2.Message(), 1000)
    with pytest.raises(InvalidParamsError):
        coral_parts(a2a_pb2.Message(parts=[a2a_pb2.Part(text="x" * 1001)]), 1000)


def test_cards_use_the_agent_base_url_and_a_parseable_grpc_url():
    echo = record("echo")
    card = agent_card(echo, "http://h:1", "h:2")
    assert [i.tenant for i in card.supported_interfaces] == ["", "", "echo"]
    data = card_json(card)
    assert data["supportedInterfaces"][2] == {
        "url": "grpc://h:2",
        "protocolBinding": "GRPC",
        "protocolVersion": "1.0",
        "tenant": "echo",
    }
    assert urlsplit(data["supportedInterfaces"][2]["url"]).port == 2
    assert agent_card(echo, "http://h:1", "h:2", tls=True).supported_interfaces[2].url == (
        "grpcs://h:2"
    )
    # 0.3 clients get the JSON-RPC URL (served by the compat layer) and nothing unserved.
    assert data["url"] == "http://h:1/a2a/echo" and data["preferredTransport"] == "JSONRPC"
    assert "additionalInterfaces" not in data
    router = router_card([echo], "http://h:1", "h:2")
    assert [s.id for s in router.skills] == ["echo"]
    assert router_card([], "http://h:1", "h:2").skills[0].id == "route"


@given(st.text(max_size=60))
def test_proxy_names_are_always_valid_agent_names(card_name: str) -> None:
    AgentManifest(name=proxy_name(card_name))  # validates the Coral name pattern


def test_answer_text_prefers_artifacts_then_status_message():
    task = a2a_pb2.Task(artifacts=[a2a_pb2.Artifact(parts=[a2a_pb2.Part(text="art")])])
    assert answer_text(task) == "art"
    task = a2a_pb2.Task(
        status=a2a_pb2.TaskStatus(message=a2a_pb2.Message(parts=[a2a_pb2.Part(text="status")]))
    )
    assert answer_text(task) == "status"


async def test_asgi_bridge_passes_body_headers_and_streams():
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "path": request.url.path,
                "body": (await request.body()).decode(),
                "who": request.scope["who"],
                "h": request.headers.get("x-a"),
            },
            headers={"x-b": "2"},
            status_code=207,
        )

    async def stream(request: Request) -> StreamingResponse:
        async def chunks():
            for i in range(3):
                yield f"data: {i}\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    inner = Starlette(routes=[Route("/echo", echo, methods=["POST"]), Route("/stream", stream)])

    async def handler(request: web.Request) -> web.StreamResponse:
        scope = asgi_scope(request, path="/" + request.match_info["tail"], extra={"who": "me"})
        return await call_asgi(inner, request, scope)

    app = web.Application()
    app.router.add_route("*", "/outer/{tail:.+}", handler)
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/outer/echo", data=b"payload", headers={"x-a": "1"})
        assert response.status == 207 and response.headers["x-b"] == "2"
        assert await response.json() == {"path": "/echo", "body": "payload", "who": "me", "h": "1"}
        streamed = await client.get("/outer/stream")
        assert streamed.headers["content-type"].startswith("text/event-stream")
        assert await streamed.text() == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
        missing = await client.get("/outer/nothing")
        assert missing.status == 404


async def test_webhook_policy_refuses_internal_targets_unless_allow_listed():
    closed = WebhookPolicy()
    assert await closed.allows("https://93.184.216.34/hook")  # a public address
    for url in (
        "http://127.0.0.1:8080/h",
        "http://10.1.2.3/h",
        "http://192.168.0.9/h",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/h",
        "http://[fd00::1]/h",
        "ftp://93.184.216.34/h",
        "http:///no-host",
        "http://localhost/h",  # resolves to loopback
    ):
        assert not await closed.allows(url), url
    opened = WebhookPolicy(["127.0.0.1", "10.0.0.0/8", "hooks.internal"])
    assert await opened.allows("http://127.0.0.1:9/h")
    assert await opened.allows("http://10.9.9.9/h")
    assert await opened.allows("http://hooks.internal/h")
    assert not await opened.allows("http://192.168.0.9/h")


def test_signed_cards_verify_with_the_node_key_and_name_it():
    card = sign_card(router_card([], "http://h:1", "h:2"), NODE, "http://h:1")
    header = card.signatures[0].protected
    decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    assert decoded == {
        "alg": "EdDSA",
        "typ": "JOSE",
        "kid": key_id(NODE),
        "jku": "http://h:1/.well-known/jwks.json",
    }
    assert jwks(NODE)["keys"][0]["kid"] == key_id(NODE)
    again = sign_card(card, NODE, "http://h:1")
    assert len(again.signatures) == 1  # re-signing replaces, never piles up
