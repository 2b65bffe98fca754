"""supportdesk.events: chat events reach the channel layer in order, without the caller waiting on Redis."""
from __future__ import annotations

import asyncio
import logging
import time

import pytest
from channels.layers import get_channel_layer

from supportdesk import events


async def _received(channel: str, count: int) -> list[dict]:
    layer = get_channel_layer()
    return [await asyncio.wait_for(layer.receive(channel), timeout=5) for _ in range(count)]


async def test_events_arrive_in_the_order_they_were_published():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(events.group_name("order-test"), channel)
    for message_id in range(20):
        events.publish("order-test", "message", message_id)

    got = await _received(channel, 20)
    await layer.group_discard(events.group_name("order-test"), channel)

    assert [event["message_id"] for event in got] == list(range(20))
    assert {event["type"] for event in got} == {"chat.event"}


def test_publishing_returns_before_the_layer_has_sent(monkeypatch):
    sent: list[int] = []

    async def slow_group_send(group: str, event: dict) -> None:
        await asyncio.sleep(0.3)
        sent.append(event["message_id"])

    monkeypatch.setattr(get_channel_layer(), "group_send", slow_group_send)
    started = time.perf_counter()
    events.publish("slow", "message", 1)
    events.publish("slow", "message", 2)
    returned_after = time.perf_counter() - started

    assert returned_after < 0.1
    assert events.flush(timeout=5)
    assert sent == [1, 2]


def test_a_layer_failure_is_logged_and_later_events_still_go_out(monkeypatch, caplog):
    sent: list[int] = []

    async def flaky_group_send(group: str, event: dict) -> None:
        if event["message_id"] == 1:
            raise ConnectionError("redis is down")
        sent.append(event["message_id"])

    monkeypatch.setattr(get_channel_layer(), "group_send", flaky_group_send)
    with caplog.at_level(logging.ERROR, logger="supportdesk.events"):
        events.publish("flaky", "message", 1)
        events.publish("flaky", "message", 2)
        assert events.flush(timeout=5)

    assert sent == [2]
    assert "could not publish chat event" in caplog.text


def test_a_hung_send_gives_up_and_the_next_events_go_out(monkeypatch, caplog):
    sent: list[int] = []

    async def hanging_group_send(group: str, event: dict) -> None:
        if event["message_id"] == 1:
            await asyncio.sleep(30)
        sent.append(event["message_id"])

    monkeypatch.setattr(events, "SEND_TIMEOUT_S", 0.2)
    monkeypatch.setattr(get_channel_layer(), "group_send", hanging_group_send)
    with caplog.at_level(logging.ERROR, logger="supportdesk.events"):
        for message_id in (1, 2, 3):
            events.publish("hung", "message", message_id)
        assert events.flush(timeout=5)

    assert sent == [2, 3]
    assert "could not publish chat event" in caplog.text


@pytest.fixture(autouse=True)
def _drained():
    yield
    events.flush(timeout=5)


async def test_hundreds_of_sockets_can_join_their_groups_at_once():
    # What 200 browsers opening the chat together do: redis-py's default pool (100, then an
    # immediate error) closed every socket past the hundredth with 1011.
    layer = get_channel_layer()
    channels = [await layer.new_channel() for _ in range(300)]
    await asyncio.gather(*(layer.group_add(f"crowd-{i}", channel) for i, channel in enumerate(channels)))
    await asyncio.gather(*(layer.group_discard(f"crowd-{i}", channel) for i, channel in enumerate(channels)))
