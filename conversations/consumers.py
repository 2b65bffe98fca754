"""The chat socket: authenticate by cookie, validate frames, delegate, send HTML fragments.

Close codes (the page explains each one and offers a new chat):
    4401  no usable session: the cookie is missing or its token is unknown
    4403  the session has expired
Other closes (1006 network drop, 1011, 1012 restart) make the client reconnect with
backoff and resync: it sends {"action": "resync", "after": <last complete message id>}
and gets everything newer, a reply still streaming as its text so far and then live.

Frames from the client: {"action": "message", "content", "client_message_id",
"attachment_ids"} (htmx's ws-send of the composer form) and {"action": "resync", "after"}.
Frames to the client: HTML fragments that htmx swaps out of band by id.
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from http.cookies import SimpleCookie

from asgiref.sync import sync_to_async
from channels.db import aclose_old_connections, database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.utils import timezone

from conversations import ratelimit, rendering, selectors, services
from conversations.forms import message_form
from conversations.hub import HubEvent, hub, run_sync
from conversations.models import ChatSession, Message
from conversations.views import COOKIE
from supportdesk.events import group_name
from supportdesk.logging import new_request_id

log = logging.getLogger(__name__)
CLOSE_CODES = {"missing": 4401, "invalid": 4401, "expired": 4403, "closed": 4403}
# Tokens arriving within this window go out in one frame: fewer, larger frames. 50 ms is
# 20 updates a second, smooth to the eye; each frame costs the server a WebSocket write.
TOKEN_BATCH_S = 0.05


@dataclass(frozen=True)
class Resync:
    after: int


@dataclass(frozen=True)
class Ack:
    message_id: int


@dataclass
class ClientView:
    """What this client's page holds, so each fragment appends or replaces correctly."""

    high: int = 0  # every message id <= high is on the page
    known: set[int] = field(default_factory=set)  # ids above `high` we have sent
    complete: set[int] = field(default_factory=set)  # ids sent in a final state
    lengths: dict[int, int] = field(default_factory=dict)  # streamed text sent per reply

    def has(self, message_id: int) -> bool:
        return message_id <= self.high or message_id in self.known

    def reset(self, after: int) -> None:
        self.high, self.known, self.complete, self.lengths = after, set(), set(), {}


def cookie_token(scope: dict) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            morsel = SimpleCookie(value.decode("latin-1")).get(COOKIE)
            return morsel.value if morsel else None
    return None


@database_sync_to_async
def authenticate(token: str | None) -> ChatSession:
    return services.session_authenticate(token=token)


@database_sync_to_async
def last_message_id(session_id: int) -> int:
    return Message.objects.filter(session_id=session_id).order_by("-id").values_list("id", flat=True).first() or 0


def accept_message(session_id: int, data: dict) -> tuple[Message, bool]:
    """Save the message (idempotent); (message, whether the agent should answer it)."""
    session = selectors.session_fresh(session_id=session_id)
    if session.is_expired():
        raise services.SessionError("expired", "This chat has expired — start a new one.")
    message, created = services.message_create(session=session, content=data["content"],
                                               client_message_id=data["client_message_id"],
                                               attachment_ids=data["attachment_ids"])
    return message, services.message_needs_reply(message=message, created=created)


def render_messages(session_id: int, after: int, also: tuple[int, ...], view: ClientView) -> str:
    """Messages newer than `after` (and `also`), appended or replaced, as one HTML string."""
    rows = selectors.messages_after(session=session_id, after=after)
    rows += [m for i in also if i <= after and (m := selectors.message_of_session(session_id=session_id, message_id=i))]
    return "".join(_render_one(session_id, m, view) for m in rows)


def _render_one(session_id: int, message: Message, view: ClientView) -> str:
    streamed = None
    if message.status == Message.Status.STREAMING:
        streamed = hub.snapshot(session_id, message.pk)
        streamed = message.content if streamed is None else streamed
        view.lengths[message.pk] = len(streamed)
    elif message.pk in view.complete:
        return ""
    else:
        view.complete.add(message.pk)
        view.lengths.pop(message.pk, None)
    html = rendering.message_fragment(message, append=not view.has(message.pk), streamed_text=streamed)
    view.known.add(message.pk)
    if message.status != Message.Status.STREAMING and message.role != "user":
        html += rendering.announce_fragment(message)
    return html


def banner(session_id: int) -> tuple[str, str]:
    context = selectors.banner_context(session_id=session_id)
    return context["state"], rendering.banner_fragment(context)


class ChatConsumer(AsyncWebsocketConsumer):
    session: ChatSession
    outbox: asyncio.Queue

    async def connect(self) -> None:
        await self.accept()  # accept first: a refused handshake would reach the browser as a bare 1006
        try:
            self.session = await authenticate(cookie_token(self.scope))
        except services.SessionError as error:
            await self.close(code=CLOSE_CODES.get(error.code, 4401))
            return
        self.group = group_name(self.session.public_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.view = ClientView(high=await last_message_id(self.session.pk))
        self.outbox = asyncio.Queue()
        hub.subscribe(self.session.pk, self.outbox)
        self.sender = asyncio.create_task(self._send_loop())

    async def disconnect(self, code: int) -> None:
        if not hasattr(self, "outbox"):
            return
        hub.unsubscribe(self.session.pk, self.outbox)
        self.sender.cancel()
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not hasattr(self, "outbox"):
            return
        try:
            frame = json.loads(text_data or "")
        except ValueError:
            frame = None
        action = frame.get("action") if isinstance(frame, dict) else None
        if action == "message":
            await self._message(frame)
        elif action == "resync":
            after = frame.get("after")
            self.outbox.put_nowait(Resync(after if isinstance(after, int) and after >= 0 else 0))
        else:
            await self.send(text_data=rendering.notice_fragment("Sorry, we could not read that."))

    async def _message(self, frame: dict) -> None:
        form = message_form(frame)
        if not form.is_valid():
            await self.send(text_data=rendering.notice_fragment(form.first_error()))
            return
        if await self._rate_limited():
            return
        try:
            message, answer = await run_sync(self.session.pk, accept_message, self.session.pk, form.cleaned_data)
        except services.SessionError as error:
            await self.close(code=CLOSE_CODES.get(error.code, 4401))
            return
        except services.MessageRejected as error:
            await self.send(text_data=rendering.notice_fragment(error.message))
            return
        self.outbox.put_nowait(Ack(message.pk))
        if answer:
            hub.submit(self.session.pk, message.pk, new_request_id())

    async def _rate_limited(self) -> bool:
        ip = (self.scope.get("client") or [""])[0]
        values = [ratelimit.session_key(self.session.public_id), ratelimit.ip_key(ip)]
        limited = await sync_to_async(ratelimit.hit, thread_sensitive=False)("messages", values=values)
        if limited:
            await self.send(text_data=rendering.notice_fragment(limited.message))
        return limited is not None

    async def chat_event(self, event: dict) -> None:
        """A message or state change from any process; the send loop re-reads the database."""
        self.outbox.put_nowait(event)

    # --- the single writer to the socket: keeps fragments in order ----------------

    async def _send_loop(self) -> None:
        while True:
            items = [await self.outbox.get()]
            while not self.outbox.empty():
                items.append(self.outbox.get_nowait())
            frame = ""
            for item in coalesce(items):
                try:
                    frame += await self._render(item)
                except Exception:  # one bad fragment must not silence the socket
                    log.exception("could not render a chat fragment")
            if frame:
                await self.send(text_data=frame)
            if any(isinstance(i, HubEvent) and i.kind == "token" for i in items):
                await asyncio.sleep(TOKEN_BATCH_S)

    async def _render(self, item: object) -> str:
        if isinstance(item, HubEvent):
            return await self._render_reply_event(item)
        if isinstance(item, Ack):
            html = await run_sync(self.session.pk, render_messages, self.session.pk, self.view.high, (item.message_id,), self.view)
            return html + rendering.notice_fragment("")
        if isinstance(item, Resync):
            self.view.reset(item.after)
            return await run_sync(self.session.pk, render_messages, self.session.pk, item.after, (), self.view)
        return await self._render_layer_event(item)  # type: ignore[arg-type]

    async def _render_reply_event(self, event: HubEvent) -> str:
        reply_id, view = event.reply_id, self.view
        if reply_id is None or reply_id in view.complete:
            return ""
        if event.kind == "start" and not view.has(reply_id):
            view.known.add(reply_id)
            view.lengths[reply_id] = 0
            draft = Message(id=reply_id, role="assistant", status="streaming", created_at=timezone.now())
            return rendering.message_fragment(draft, append=True, streamed_text="")
        if event.kind == "token" and reply_id in view.lengths:
            return self._token(event)
        if event.kind == "restart" and reply_id in view.lengths:
            view.lengths[reply_id] = 0
            return rendering.restart_fragment(reply_id)
        if event.kind in ("done", "skipped"):
            return await run_sync(self.session.pk, render_messages, self.session.pk, view.high, (reply_id,), view)
        return ""

    def _token(self, event: HubEvent) -> str:
        sent = self.view.lengths[event.reply_id]  # type: ignore[index]
        if event.offset > sent:  # we missed some: resend the whole text so far
            text = hub.snapshot(self.session.pk, event.reply_id) or ""  # type: ignore[arg-type]
            self.view.lengths[event.reply_id] = len(text)  # type: ignore[index]
            return rendering.restart_fragment(event.reply_id) + rendering.tokens_fragment(event.reply_id, text)  # type: ignore[arg-type]
        fresh = event.text[sent - event.offset:]
        self.view.lengths[event.reply_id] = event.offset + len(event.text)  # type: ignore[index]
        return rendering.tokens_fragment(event.reply_id, fresh) if fresh else ""  # type: ignore[arg-type]

    async def _render_layer_event(self, event: dict) -> str:
        await aclose_old_connections()
        if event.get("kind") == "state":
            state, html = await run_sync(self.session.pk, banner, self.session.pk)
            if state != ChatSession.State.BOT and hub.cancel(self.session.pk):
                log.info("bot reply cancelled: a human took over")
            return html
        message_id = event.get("message_id")
        if event.get("kind") != "message" or not isinstance(message_id, int) or message_id in self.view.complete:
            return ""
        return await run_sync(self.session.pk, render_messages, self.session.pk, self.view.high, (message_id,), self.view)


def coalesce(items: list[object]) -> list[object]:
    """Merge consecutive tokens of one reply, so a burst becomes one fragment."""
    merged: list[object] = []
    for item in items:
        last = merged[-1] if merged else None
        if (isinstance(item, HubEvent) and item.kind == "token" and isinstance(last, HubEvent)
                and last.kind == "token" and last.reply_id == item.reply_id
                and last.offset + len(last.text) == item.offset):
            merged[-1] = HubEvent("token", item.message_id, item.reply_id, last.text + item.text, last.offset)
        else:
            merged.append(item)
    return merged
