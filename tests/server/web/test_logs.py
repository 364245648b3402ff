"""Logging: JSON lines carry the request context; text stays readable."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from server.web.logs import JsonFormatter, configure_logging


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "batchserve.access", logging.INFO, __file__, 1, "hello %s", ("x",), None
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_hold_timestamp_level_logger_message_and_context() -> None:
    line = JsonFormatter().format(_record(request_id="r1", status=200, duration_ms=1.5))
    entry = json.loads(line)
    assert entry["level"] == "info"
    assert entry["logger"] == "batchserve.access"
    assert entry["message"] == "hello x"
    assert (entry["request_id"], entry["status"], entry["duration_ms"]) == ("r1", 200, 1.5)
    assert entry["timestamp"].endswith("+00:00")
    assert "method" not in entry


def test_exceptions_are_kept_inside_the_json_object() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in entry["exception"]


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_uvicorn_logs_go_through_the_same_handler(
    log_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("info", log_format)
        logging.getLogger("uvicorn.error").info("from uvicorn")
        err = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    if log_format == "json":
        assert json.loads(err)["logger"] == "uvicorn.error"
    else:
        assert "INFO" in err
        assert "uvicorn.error: from uvicorn" in err
