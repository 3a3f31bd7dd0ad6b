"""Logging set-up: human lines by default, one JSON object per line on request.

The id of the request being handled (``X-Request-Id``) lives in a contextvar
set by the HTTP adapter; a filter copies it onto every record logged while
that request runs, so a log line can be traced back to the request.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from pythonjsonlogger import json as jsonlogger

from coral.api.http.request_ids import current_request_id


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to records logged while a request is being served."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current_request_id.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


class MalformedHttpFilter(logging.Filter):
    """Turns aiohttp's traceback for an unparseable request into one info line.

    A request line or header past the size limits (LineTooLong) or bytes
    that are not HTTP are the client's mistake: aiohttp already answers 400,
    so the node logs what was refused, not a stack trace.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 400) < 500:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "refused a malformed HTTP request (%s): %s"
            record.args = (type(exc).__name__, str(exc.message).split("\n", 1)[0][:200])
            record.exc_info, record.exc_text = None, None
        return True


class JsonFormatter(jsonlogger.JsonFormatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, then the
    record's ``extra=`` fields (``request_id``, ``peer``, ``agent``, ``thread_id``, ...)
    and ``exc`` (the formatted traceback) when there is one.

    python-json-logger does the record-to-JSON work; this only fixes the field
    names and the timestamp form (UTC, milliseconds, ``Z``). Callers pass
    ``thread_id``, not ``thread``, which is LogRecord's own thread id.
    """

    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={
                "asctime": "ts",
                "levelname": "level",
                "name": "logger",
                "message": "msg",
                "exc_info": "exc",
            },
            json_ensure_ascii=False,
        )
        self.converter = time.gmtime

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        """Levels are lower case (``info``), as the human lines' config spells them."""
        log_data["level"] = str(log_data["level"]).lower()
        return log_data


class HumanFormatter(logging.Formatter):
    """``time level logger: message``, with ``[req=<id>]`` when a request id is known."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} [req={request_id}]" if request_id else line


def configure_logging(level: str = "info", as_json: bool = False) -> None:
    """Send logs to stderr at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else HumanFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedHttpFilter) for f in server_log.filters):
        server_log.addFilter(MalformedHttpFilter())
