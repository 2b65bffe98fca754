"""Shared fixtures: the users alice (owner), bob (staff agent) and charlie (outsider), and a fake order API."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import caches


@pytest.fixture
def alice(db):
    """The owner: a superuser."""
    return get_user_model().objects.create_superuser("alice", "alice@example.com", "alice-password")


@pytest.fixture
def bob(db):
    """A staff member (support agent) without superuser rights."""
    return get_user_model().objects.create_user("bob", "bob@example.com", "bob-password", is_staff=True)


@pytest.fixture
def charlie(db):
    """An outsider: a signed-in user with no staff rights."""
    return get_user_model().objects.create_user("charlie", "charlie@example.com", "charlie-password")


@pytest.fixture(autouse=True)
def _clean_cache():
    yield
    from django.conf import settings

    if settings.configured:  # pure-module tests may run without Django (-p no:django)
        for cache in caches.all():
            cache.clear()


class _Orders(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        server = self.server
        server.calls.append((self.path, self.headers.get("Authorization")))
        status, body = server.responses.pop(0) if server.responses else (200, server.default)
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def order_service(settings):
    """A local fake of the shop's order API."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Orders)
    server.calls, server.responses = [], []
    server.default = {"id": "NW-100234", "status": "Shipped", "carrier": "UPS", "tracking_number": "1Z999",
                      "estimated_delivery": "2026-11-28"}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.ORDER_API_URL = f"http://127.0.0.1:{server.server_address[1]}"
    settings.ORDER_API_TOKEN = "order-token"
    settings.ORDER_API_TIMEOUT_S = 1.0
    yield server
    server.shutdown()
