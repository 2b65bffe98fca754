"""Drives one agent reply for a saved user message and persists it.

Transports (the socket consumer, the plain POST fallback, the JSON API and its SSE
stream) iterate `respond()` and only render what it yields.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.db.models import Exists, OuterRef

from agent import audit
from agent.orchestrator import run as agent_run
from agent.schema import AgentContext, Final, Restart, Token
from conversations import services
from conversations.models import Attachment, ChatSession, Message
from conversations.store import DbConversationStore
from supportdesk.logging import request_id_var, session_id_var

log = logging.getLogger(__name__)
# How often a streaming reply's text so far is saved (for the JSON API's readers and other
# processes; this process's sockets read it from the hub). Each save is a write per reply.
CHECKPOINT_EVERY_S = 1.0


@dataclass(frozen=True)
class ReplyEvent:
    kind: str  # "start" | "token" | "restart" | "done" | "skipped"
    reply_id: int | None
    text: str = ""


def _load(session_id: int, message_id: int) -> tuple[ChatSession, Message, Message | None]:
    # Whether it has attachments comes along, so the agent's attachments step asks only then.
    message = (Message.objects.select_related("session")
               .annotate(has_attachments=Exists(Attachment.objects.filter(message=OuterRef("pk"))))
               .get(pk=message_id, session_id=session_id))
    session = message.session
    if not session.bot_may_reply():
        return session, message, None
    return session, message, services.reply_start(session=session, user_message=message)


async def respond(*, session_id: int, message_id: int, request_id: str = "") -> AsyncIterator[ReplyEvent]:
    """Stream the agent's reply to `message_id`; nothing happens while a human owns the chat."""
    session, message, reply = await sync_to_async(_load)(session_id, message_id)
    if reply is None or reply.status == Message.Status.COMPLETE:
        yield ReplyEvent("skipped", reply.pk if reply else None)
        return
    request_id_var.set(request_id)
    session_id_var.set(str(session.public_id))
    ctx = AgentContext(session_id=session.pk, session_public_id=str(session.public_id), message_id=message.pk,
                       text=message.content, request_id=request_id, customer_email=session.end_user_email,
                       store=DbConversationStore(session_id=session.pk, message_id=message.pk,
                                                 has_attachments=message.has_attachments))
    started, text, checkpoint = time.perf_counter(), "", time.perf_counter()
    yield ReplyEvent("start", reply.pk)
    try:
        async for event in agent_run(ctx):
            if isinstance(event, Token):
                text += event.text
                yield ReplyEvent("token", reply.pk, event.text)
                if time.perf_counter() - checkpoint > CHECKPOINT_EVERY_S:
                    checkpoint = time.perf_counter()
                    await sync_to_async(services.reply_progress)(reply=reply, text=text)
            elif isinstance(event, Restart):
                text = ""
                yield ReplyEvent("restart", reply.pk)
            elif isinstance(event, Final):
                latency = int(1000 * (time.perf_counter() - started))
                await sync_to_async(services.reply_complete)(reply=reply, response=event.response, latency_ms=latency)
                yield ReplyEvent("done", reply.pk, event.response.text)
    except (asyncio.CancelledError, GeneratorExit):
        await asyncio.shield(_interrupted(reply, text, ctx.run_id))
        raise
    except Exception:
        log.exception("agent reply failed")
        await _interrupted(reply, text or "Sorry, something went wrong on our side. Please try again.", ctx.run_id)
        yield ReplyEvent("done", reply.pk)


async def _interrupted(reply: Message, text: str, run_id: int | None) -> None:
    await sync_to_async(services.reply_interrupt)(reply=reply, text=text)
    await sync_to_async(audit.run_interrupted)(run_id, "reply interrupted")
