"""The chat socket against the real ASGI app and the real channels-redis layer."""
from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from agent.fake_llm import Behaviour
from conversations import ratelimit, services
from conversations.hub import hub
from conversations.models import ChatSession, Message
from conversations.tests.conftest import complete, frames_until, open_socket, send_frame, streamed_tokens
from supportdesk import events

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


async def closed_with(token: str | None) -> int:
    communicator, connected = await open_socket(token)
    assert connected
    output = await communicator.receive_output(timeout=5)
    await communicator.wait()
    assert output["type"] == "websocket.close"
    return output["code"]


def reply_to(message: Message) -> Message:
    return Message.objects.get(reply_to=message, role="assistant")


async def wait_for(predicate, timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while not await sync_to_async(predicate)():
            await asyncio.sleep(0.05)


def test_the_tests_use_the_real_redis_channel_layer():
    assert type(get_channel_layer()).__name__ == "RedisChannelLayer"


async def test_it_refuses_a_socket_without_a_session_cookie_with_4401():
    assert await closed_with(None) == 4401


async def test_it_refuses_an_unknown_token_with_4401():
    assert await closed_with("not-a-real-token") == 4401


async def test_it_refuses_an_expired_session_with_4403(chat):
    await sync_to_async(ChatSession.objects.filter(pk=chat.session.pk).update)(
        expires_at=timezone.now() - timedelta(minutes=1))
    assert await closed_with(chat.token) == 4403


async def test_it_saves_the_message_and_streams_the_reply_token_by_token(chat, fake_llm):
    fake_llm.script(Behaviour(kind="text", text="Refunds take five to seven working days.", token_delay=0.05))
    communicator, _ = await open_socket(chat.token)
    await communicator.send_json_to(send_frame("How long do refunds take?", "c-1"))

    frames = await frames_until(communicator, complete())
    await communicator.disconnect()

    message = await sync_to_async(Message.objects.get)(session=chat.session, client_message_id="c-1")
    reply = await sync_to_async(reply_to)(message)
    assert message.content == "How long do refunds take?"
    assert 'data-client-id="c-1"' in frames
    assert len(streamed_tokens(frames, reply.pk)) >= 3  # not one lump at the end
    assert "".join(streamed_tokens(frames, reply.pk)) == "Refunds take five to seven working days."
    assert reply.status == "complete" and reply.content == "Refunds take five to seven working days."


async def test_a_resent_client_message_id_is_saved_once_and_answered_once(chat, fake_llm):
    fake_llm.script(Behaviour(kind="text", text="Answered once.", token_delay=0.02))
    communicator, _ = await open_socket(chat.token)
    await communicator.send_json_to(send_frame("Where is my parcel?", "same-id"))
    await communicator.send_json_to(send_frame("Where is my parcel?", "same-id"))
    await frames_until(communicator, complete())
    await communicator.send_json_to(send_frame("Where is my parcel?", "same-id"))
    await asyncio.sleep(0.5)
    await communicator.disconnect()

    rows = await sync_to_async(list)(Message.objects.filter(session=chat.session).values_list("role", flat=True))
    assert rows == ["user", "assistant"]
    assert len(fake_llm.requests) == 1


async def test_it_replays_a_reply_that_finished_while_offline(chat, fake_llm):
    fake_llm.script(Behaviour(kind="text", text="This reply finished while you were away.", token_delay=0.05))
    communicator, _ = await open_socket(chat.token)
    await communicator.send_json_to(send_frame("Hello?", "c-offline"))
    await frames_until(communicator, lambda text: "beforeend:#m-" in text and "-text" in text)
    await communicator.disconnect()  # the socket drops mid-reply
    message = await sync_to_async(Message.objects.get)(client_message_id="c-offline")
    await wait_for(lambda: reply_to(message).status == "complete")

    again, _ = await open_socket(chat.token)
    await again.send_json_to({"action": "resync", "after": message.pk})
    frames = await frames_until(again, complete())
    await again.disconnect()

    assert "This reply finished while you were away." in frames
    assert f'data-id="{message.pk}"' not in frames  # only what the client missed


async def test_a_reply_still_streaming_continues_after_reconnect(chat, fake_llm):
    text = "one two three four five six seven eight nine ten eleven twelve"
    fake_llm.script(Behaviour(kind="text", text=text, token_delay=0.15))
    communicator, _ = await open_socket(chat.token)
    await communicator.send_json_to(send_frame("Count for me", "c-live"))
    await frames_until(communicator, lambda t: "three" in t)
    await communicator.disconnect()

    again, _ = await open_socket(chat.token)
    message = await sync_to_async(Message.objects.get)(client_message_id="c-live")
    await again.send_json_to({"action": "resync", "after": message.pk})
    frames = await frames_until(again, complete(), timeout=30)
    await again.disconnect()

    reply = await sync_to_async(reply_to)(message)
    replayed = re.search(rf'<span id="m-{reply.pk}-text" class="streamed">(.*?)</span>', frames, re.S)
    assert replayed and replayed.group(1).startswith("one two")  # the text so far, then
    assert streamed_tokens(frames, reply.pk)  # live tokens, then the final message
    assert replayed.group(1) + "".join(streamed_tokens(frames, reply.pk)) == text
    assert reply.content == text


async def test_a_human_message_from_another_process_reaches_the_socket(chat):
    communicator, _ = await open_socket(chat.token)
    await communicator.send_json_to({"action": "resync", "after": 0})
    await asyncio.sleep(0.2)
    human = await sync_to_async(Message.objects.create)(session=chat.session, role="human", author_name="Dana",
                                                        content="Hi, I'm **Dana** from support.")
    await sync_to_async(events.publish)(chat.session.public_id, "message", human.pk)

    frames = await frames_until(communicator, lambda t: f'id="m-{human.pk}"' in t)
    await communicator.disconnect()

    assert "msg-human" in frames and "Dana" in frames and "<strong>Dana</strong>" in frames


async def test_a_human_takeover_cancels_the_running_bot_reply(chat, fake_llm):
    fake_llm.script(Behaviour(kind="text", text=" ".join(["word"] * 60), token_delay=0.1))
    communicator, _ = await open_socket(chat.token)
    await communicator.send_json_to(send_frame("Tell me a long story", "c-takeover"))
    await frames_until(communicator, lambda t: t.count("word") >= 3)

    await sync_to_async(ChatSession.objects.filter(pk=chat.session.pk).update)(state="human")
    await sync_to_async(events.publish)(chat.session.public_id, "state", None)
    frames = await frames_until(communicator, complete())
    await communicator.disconnect()

    message = await sync_to_async(Message.objects.get)(client_message_id="c-takeover")
    reply = await sync_to_async(reply_to)(message)
    assert reply.status == "interrupted"
    assert reply.content.count("word") < 60
    assert 'id="banner"' in frames and "from support has joined" in frames


async def test_over_the_rate_limit_a_message_is_refused_with_the_wait_and_not_saved(chat, settings):
    settings.RATE_LIMIT_MESSAGES = "1/m"
    communicator, _ = await open_socket(chat.token)
    await sync_to_async(ratelimit.hit)("messages", values=[ratelimit.session_key(chat.session.public_id)])
    await communicator.send_json_to(send_frame("One more?", "c-limited"))

    frames = await frames_until(communicator, lambda t: 'id="notice"' in t)
    await communicator.disconnect()

    assert re.search(r"too fast — please try again in \d+ s", frames)
    assert not await sync_to_async(Message.objects.filter(client_message_id="c-limited").exists)()


async def test_a_frame_that_is_not_json_gets_a_notice_and_the_socket_stays_open(chat):
    communicator, _ = await open_socket(chat.token)
    await communicator.send_to(text_data="{not json")
    await communicator.send_json_to(send_frame(""))

    frames = await frames_until(communicator, lambda t: "Type a message first." in t)
    await communicator.disconnect()

    assert "could not read that" in frames


async def test_the_hub_forgets_a_session_once_its_reply_is_done_and_nobody_listens(chat):
    communicator, _ = await open_socket(chat.token)
    await communicator.send_json_to(send_frame("Anything?", "c-hub"))
    await frames_until(communicator, complete())
    await communicator.disconnect()
    await asyncio.sleep(0.1)

    assert chat.session.pk not in hub._sessions
    assert services.MAX_MESSAGE_CHARS == 4000  # the form's limit mirrors the service's
