"""Structured logs for the signer: one JSON object per line, carrying the request id the metadata
server sent as gRPC metadata (`x-request-id`), so a publish can be followed across both processes.

Log lines carry key ids, versions and payload digests: never payloads, passphrases or key bytes.
(The server has its own copy of this small formatter: the two share only `proto/`.)
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import Any

REQUEST_ID_METADATA = "x-request-id"
_PLAIN_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("tufnotary_signer_request_id", default="")
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_JSON = json.JSONEncoder(ensure_ascii=False)  # made once: json.dumps builds one per call when given an option


def bind_request_id(metadata: Any) -> None:
    """Take the request id from a call's invocation metadata for this thread's log lines."""
    request_id = ""
    for key, value in metadata or ():
        if key == REQUEST_ID_METADATA and isinstance(value, str) and _PLAIN_ID.match(value):
            request_id = value
    _request_id.set(request_id)


def current_request_id() -> str:
    return _request_id.get()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = _request_id.get()
        if request_id:
            entry["request_id"] = request_id
        attributes = vars(record)
        if not attributes.keys() <= _STANDARD:  # any `extra`, in the record's order (most records have none)
            for key, value in attributes.items():
                if key not in _STANDARD and key not in entry:
                    entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _JSON.encode(entry)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        return f"{line} [request_id={current_request_id()}]" if current_request_id() else line


def configure_logging(fmt: str = "json") -> None:
    """Root logging to stderr at INFO in `fmt` ("json" or "text"). Neither format shows the caller, thread or
    process of a record, so records do not collect them (the logging HOWTO's "Optimization": a third of a line's
    cost)."""
    logging._srcfile = None  # type: ignore[attr-defined]  # no stack walk per record for the caller
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
