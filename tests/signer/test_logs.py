"""The signer's JSON log lines: one object per line with the time, level, logger, message, the bound request
id and any `extra` attributes, never escaping non-ASCII text."""

from __future__ import annotations

import json
import logging
import sys

from tufnotary.signer.logs import JsonFormatter, bind_request_id


def _record(msg: str, *args: object, extra: dict[str, object] | None = None, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.getLogger("tufnotary.signer.test").makeRecord(
        "tufnotary.signer.test", logging.WARNING, __file__, 1, msg, args, exc_info, extra=extra
    )


def test_a_plain_record_has_only_the_standard_fields() -> None:
    bind_request_id(())
    entry = json.loads(JsonFormatter().format(_record("signed batch items=%d-%d client=%s", 0, 49, "CN=zoë")))
    assert list(entry) == ["time", "level", "logger", "message"]
    assert entry["message"] == "signed batch items=0-49 client=CN=zoë"
    assert (entry["level"], entry["logger"]) == ("warning", "tufnotary.signer.test")
    assert "zoë" in JsonFormatter().format(_record("%s", "zoë"))  # not escaped to \\u00eb


def test_request_id_extras_in_their_order_and_the_exception() -> None:
    bind_request_id((("x-request-id", "req-42"),))
    try:
        record = _record("refused", extra={"key_id": "abc", "count": 3, "where": ("a", 1), "time": "not mine"}, exc=True)
        entry = json.loads(JsonFormatter().format(record))
    finally:
        bind_request_id(())
    assert entry["request_id"] == "req-42"
    extras = [key for key in entry if key not in ("time", "level", "logger", "message", "request_id", "exception")]
    assert extras == ["key_id", "count", "where"]  # the record's order; "time" stays the formatter's
    assert (entry["key_id"], entry["count"], entry["where"]) == ("abc", 3, "('a', 1)")
    assert entry["time"] != "not mine"
    assert "ValueError: boom" in entry["exception"]


def test_attributes_set_by_other_formatters_are_not_extras() -> None:
    bind_request_id(())
    record = _record("hello")
    logging.Formatter("%(asctime)s %(message)s").format(record)  # sets record.message and record.asctime
    assert list(json.loads(JsonFormatter().format(record))) == ["time", "level", "logger", "message"]
