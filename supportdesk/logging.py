"""Request and session ids carried by every log line (contextvars work in async code too)."""
from __future__ import annotations

import logging
import uuid
from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("request_id", default="")
session_id_var: ContextVar[str] = ContextVar("session_id", default="")


def new_request_id() -> str:
    return uuid.uuid4().hex


class ContextFilter(logging.Filter):
    """Adds request_id and session_id to each record (empty strings when unknown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = getattr(record, "request_id", "") or request_id_var.get()
        record.session_id = getattr(record, "session_id", "") or session_id_var.get()
        return True
