"""Rate limits: the socket and HTTP share counters; over the limit nothing is saved; Redis down fails open."""
from __future__ import annotations

import html

import pytest

from conversations import ratelimit
from conversations.models import Message
from conversations.views import COOKIE

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_socket_helper_and_django_ratelimit_count_the_same_key(client, chat, settings):
    settings.RATE_LIMIT_MESSAGES = "2/m"
    client.cookies[COOKIE] = chat.token
    key = ratelimit.session_key(chat.session.public_id)
    ratelimit.hit("messages", values=[key])
    ratelimit.hit("messages", values=[key])

    response = client.post("/send/", {"content": "third", "client_message_id": "r-3"})

    assert response.status_code == 429
    assert "You're sending messages too fast — please try again in" in html.unescape(response.content.decode())
    assert "third" in response.content.decode()  # the text stays in the box
    assert not Message.objects.filter(client_message_id="r-3").exists()


def test_the_limit_counts_per_ip_across_sessions(settings):
    settings.RATE_LIMIT_MESSAGES = "1/m"

    first = ratelimit.hit("messages", values=["session:a", "ip:10.0.0.9"])
    second = ratelimit.hit("messages", values=["session:b", "ip:10.0.0.9"])

    assert first is None and second is not None and second.wait_s <= 60


def test_with_the_cache_down_limits_fail_open(settings):
    settings.RATE_LIMIT_MESSAGES = "1/m"
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:9/0"}}

    results = [ratelimit.hit("messages", values=["session:down"]) for _ in range(3)]

    assert results == [None, None, None]


def test_with_the_cache_down_http_limits_fail_open(client, chat, settings, fake_llm):
    settings.RATE_LIMIT_MESSAGES = "1/m"
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:9/0"}}
    client.cookies[COOKIE] = chat.token

    statuses = [client.post("/send/", {"content": f"m{i}", "client_message_id": f"d{i}"}).status_code
                for i in range(2)]

    assert statuses == [302, 302]


def test_new_chats_are_limited_per_ip(client, settings):
    settings.RATE_LIMIT_SESSIONS = "1/h"
    client.get("/")
    client.cookies.clear()

    response = client.get("/")

    assert response.status_code == 429 and "starting new chats too fast" in response.content.decode()
