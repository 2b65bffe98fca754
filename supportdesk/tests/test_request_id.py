"""Every response carries a request id, and log lines carry it too."""
from __future__ import annotations

import json
import logging

from supportdesk.logging import ContextFilter, request_id_var, session_id_var


def test_an_incoming_request_id_is_echoed_back(client) -> None:
    response = client.get("/healthz", HTTP_X_REQUEST_ID="req-abc.123")
    assert response["X-Request-ID"] == "req-abc.123"


def test_a_request_id_is_generated_when_absent(client) -> None:
    first, second = client.get("/healthz")["X-Request-ID"], client.get("/healthz")["X-Request-ID"]
    assert len(first) == 32 and first != second


def test_a_hostile_request_id_is_replaced(client) -> None:
    response = client.get("/healthz", HTTP_X_REQUEST_ID="evil\nINFO forged log line")
    assert "\n" not in response["X-Request-ID"] and "forged" not in response["X-Request-ID"]


def test_log_lines_are_json_with_request_and_session_ids(capsys) -> None:
    from django.conf import settings
    from pythonjsonlogger.json import JsonFormatter

    fmt = settings.LOGGING["formatters"]["json"]
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(fmt["format"], rename_fields=fmt["rename_fields"]))
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("supportdesk.test")
    logger.addHandler(handler)
    tokens = request_id_var.set("rid-1"), session_id_var.set("sid-9")
    try:
        logger.warning("hello")
    finally:
        request_id_var.reset(tokens[0])
        session_id_var.reset(tokens[1])
        logger.removeHandler(handler)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["message"] == "hello" and line["request_id"] == "rid-1" and line["session_id"] == "sid-9"
    assert line["level"] == "WARNING"


def test_the_request_id_reaches_log_lines_written_during_the_request(client, caplog) -> None:
    caplog.handler.addFilter(ContextFilter())
    with caplog.at_level(logging.INFO, logger="supportdesk.access"):
        client.get("/healthz", HTTP_X_REQUEST_ID="trace-me")
    records = [r for r in caplog.records if r.name == "supportdesk.access"]
    assert records and records[-1].request_id == "trace-me"
    assert records[-1].status == 200
