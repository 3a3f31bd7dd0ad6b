"""Log lines: one JSON object per record on request, human lines otherwise."""

import json
import logging
import re

import pytest

from coral.api.http.request_ids import current_request_id
from coral.node.logs import configure_logging


@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_standard_fields_and_extras(capsys, restore_root_logger):
    configure_logging("debug", as_json=True)
    log = logging.getLogger("coral.test")
    token = current_request_id.set("req-1")
    try:
        log.info("hello %s", "wörld", extra={"peer": "did:key:zP", "thread_id": "t1"})
        try:
            raise ValueError("bad")
        except ValueError:
            log.exception("failed")
    finally:
        current_request_id.reset(token)
    log.debug("outside a request")
    lines = capsys.readouterr().err.splitlines()
    assert "wörld" in lines[0]  # UTF-8 as is, not \u escapes
    first, second, third = (json.loads(line) for line in lines)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert {k: first[k] for k in ("level", "logger", "msg", "request_id", "peer", "thread_id")} == {
        "level": "info",
        "logger": "coral.test",
        "msg": "hello wörld",
        "request_id": "req-1",
        "peer": "did:key:zP",
        "thread_id": "t1",
    }
    assert "exc" not in first
    assert second["level"] == "error" and "ValueError: bad" in second["exc"]
    assert third["level"] == "debug" and "request_id" not in third


def test_human_lines_name_the_request(capsys, restore_root_logger):
    configure_logging("info", as_json=False)
    token = current_request_id.set("req-2")
    try:
        logging.getLogger("coral.test").warning("careful")
    finally:
        current_request_id.reset(token)
    line = capsys.readouterr().err.strip()
    assert line.endswith("WARNING coral.test: careful [req=req-2]")
