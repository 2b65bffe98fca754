"""Writes on conversations: sessions, messages, replies; events are published on commit."""
from __future__ import annotations

import hashlib
import logging
import secrets
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from agent.schema import AgentResponse
from supportdesk import events
from conversations.models import Attachment, ChatSession, Message

log = logging.getLogger(__name__)
MAX_MESSAGE_CHARS = 4000
MAX_CLIENT_ID_CHARS = 64


class SessionError(Exception):
    """A chat session cannot be used; `code` is one of missing, invalid, expired, closed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class MessageRejected(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewSession:
    session: ChatSession
    token: str


def session_create(*, end_user_id: str = "", email: str = "", name: str = "") -> NewSession:
    """A new chat session; the token is returned once and only its hash is stored."""
    token = secrets.token_urlsafe(32)
    session = ChatSession.objects.create(
        token_hash=hash_token(token), expires_at=timezone.now() + timedelta(seconds=settings.CHAT_SESSION_TTL_S),
        end_user_id=end_user_id[:200], end_user_email=email[:254], end_user_name=name[:200],
    )
    return NewSession(session=session, token=token)


def session_authenticate(*, token: str | None) -> ChatSession:
    """The session a token opens, or SessionError saying why not."""
    if not token:
        raise SessionError("missing", "No chat session — start a new one.")
    session = ChatSession.objects.filter(token_hash=hash_token(token)).first()
    if session is None:
        raise SessionError("invalid", "This chat link is not valid — start a new chat.")
    if session.is_expired():
        raise SessionError("expired", "This chat has expired — start a new one.")
    return session


# Sliding expiry to the minute: a chat's messages come seconds apart, and each write of the
# session row is a round trip before the agent can start.
TOUCH_EVERY_S = 60


def session_touch(*, session: ChatSession) -> None:
    """Activity keeps a session alive (sliding expiry)."""
    now = timezone.now()
    if session.last_activity_at and now - session.last_activity_at < timedelta(seconds=TOUCH_EVERY_S):
        return
    session.last_activity_at, session.expires_at = now, now + timedelta(seconds=settings.CHAT_SESSION_TTL_S)
    ChatSession.objects.filter(pk=session.pk).update(last_activity_at=now, expires_at=session.expires_at)


def check_message(*, content: str, client_message_id: str, has_attachments: bool = False) -> str:
    content = (content or "").strip()
    if not content and not has_attachments:
        raise MessageRejected("empty", "Type a message first.")
    if len(content) > MAX_MESSAGE_CHARS:
        raise MessageRejected("too_long", f"Messages can be at most {MAX_MESSAGE_CHARS} characters.")
    if len(client_message_id or "") > MAX_CLIENT_ID_CHARS:
        raise MessageRejected("bad_client_id", "client_message_id is too long.")
    if "\x00" in content:
        raise MessageRejected("bad_content", "The message contains characters we cannot store.")
    return content


def message_create(
    *, session: ChatSession, content: str, client_message_id: str = "", attachment_ids: tuple[int, ...] = ()
) -> tuple[Message, bool]:
    """Save a user message before anything else happens; (message, created).

    Resending with the same client_message_id returns the first message, so a double
    click, a retry or a reconnect never creates a duplicate.
    """
    content = check_message(content=content, client_message_id=client_message_id, has_attachments=bool(attachment_ids))
    if session.state == ChatSession.State.CLOSED:
        raise MessageRejected("closed", "This conversation is closed — start a new one.")
    if client_message_id:
        existing = Message.objects.filter(session=session, client_message_id=client_message_id).first()
        if existing:
            return existing, False
    try:
        # A transaction only when there are attachments to link (BEGIN and COMMIT are two more
        # round trips before the agent can start), or a savepoint inside a caller's transaction,
        # which a duplicate's IntegrityError would otherwise abort.
        atomic = attachment_ids or transaction.get_connection().in_atomic_block
        with transaction.atomic() if atomic else nullcontext():
            message = Message.objects.create(session=session, role=Message.Role.USER, content=content,
                                             client_message_id=client_message_id)
            if attachment_ids:
                Attachment.objects.filter(pk__in=attachment_ids, session=session, message=None).update(message=message)
    except IntegrityError:  # a concurrent resend won the race
        return Message.objects.get(session=session, client_message_id=client_message_id), False
    session_touch(session=session)
    if session.state != ChatSession.State.BOT:
        _capture_email_for_humans(session)
    events.publish_on_commit(session, "message", message.pk)
    return message, True


def _capture_email_for_humans(session: ChatSession) -> None:
    """While waiting for a human (e.g. out of hours), an email the user types is kept at once."""
    from escalations.selectors import open_escalation_for
    from escalations.services import escalation_email_capture

    escalation = open_escalation_for(session_id=session.pk)
    if escalation is not None:
        escalation_email_capture(escalation=escalation)


def reply_start(*, session: ChatSession, user_message: Message) -> Message:
    """The assistant's reply, created empty and 'streaming' so a reconnecting client can find it."""
    existing = Message.objects.filter(reply_to=user_message, role=Message.Role.ASSISTANT).first()
    if existing:
        return existing
    return Message.objects.create(session=session, role=Message.Role.ASSISTANT, reply_to=user_message,
                                  status=Message.Status.STREAMING)


def reply_progress(*, reply: Message, text: str) -> None:
    """Checkpoint streamed text, so a client that reconnects mid-reply sees it."""
    Message.objects.filter(pk=reply.pk, status=Message.Status.STREAMING).update(content=text)


def reply_complete(*, reply: Message, response: AgentResponse, latency_ms: int) -> Message:
    """Store the finished reply with its sources, usage and timings; escalate if asked."""
    from agent.audit import run_link_reply

    with transaction.atomic():
        current = Message.objects.select_for_update().filter(pk=reply.pk).values_list("status", flat=True).first()
        if current != Message.Status.STREAMING:
            # A human took over meanwhile and the reply was marked interrupted: keep it so.
            return Message.objects.get(pk=reply.pk)
        reply.content, reply.status = response.text, Message.Status.COMPLETE
        reply.sources = [s.as_dict() for s in response.sources]
        reply.grounded, reply.confidence, reply.model = response.mode == "grounded", response.confidence, response.model
        reply.latency_ms, reply.first_token_ms = latency_ms, int(response.timings_ms.get("first_token", 0))
        reply.prompt_tokens, reply.completion_tokens = response.prompt_tokens, response.completion_tokens
        reply.cost_usd = Decimal(str(round(response.cost_usd, 6)))
        reply.save()
        if response.run_id:
            run_link_reply(response.run_id, reply.pk)
        if response.escalated:
            session_escalate(session=reply.session, reason=response.escalation_reason,
                             detail=response.escalation_detail, priority=response.escalation_priority)
        events.publish_on_commit(reply.session, "message", reply.pk)
    return reply


def reply_interrupt(*, reply: Message, text: str, reason: str = "") -> None:
    """A reply stopped before it finished (a human took over, the LLM and fallbacks failed)."""
    Message.objects.filter(pk=reply.pk, status=Message.Status.STREAMING).update(
        content=text, status=Message.Status.INTERRUPTED)
    events.publish_on_commit(reply.session, "message", reply.pk)


def session_escalate(*, session: ChatSession, reason: str, detail: str = "", priority: str = "") -> None:
    """Hand the chat to a human: open an escalation and stop the bot."""
    from escalations.services import escalation_open

    escalation_open(session_id=session.pk, reason=reason, detail=detail, priority=priority)
    ChatSession.objects.filter(pk=session.pk, state=ChatSession.State.BOT).update(state=ChatSession.State.WAITING)
    events.publish_on_commit(session, "state", None)


def feedback_set(*, session: ChatSession, message_id: int, value: str, comment: str = "") -> Message:
    """Thumbs up or down on an assistant reply of this session."""
    if value not in (Message.Feedback.UP, Message.Feedback.DOWN):
        raise MessageRejected("bad_feedback", "Feedback must be 'up' or 'down'.")
    message = Message.objects.filter(pk=message_id, session=session, role=Message.Role.ASSISTANT).first()
    if message is None:
        raise MessageRejected("not_found", "No such reply in this chat.")
    message.feedback, message.feedback_comment = value, (comment or "").strip()[:2000]
    message.feedback_at = timezone.now()
    message.save(update_fields=["feedback", "feedback_comment", "feedback_at"])
    from conversations.metrics import FEEDBACK

    FEEDBACK.labels(value).inc()
    return message


# --- Chat page additions: attachments -----------------------------------------


def check_attachment(*, name: str, size: int) -> str:
    """The file's extension when its type and size are allowed; MessageRejected otherwise."""
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if extension not in settings.ATTACHMENT_TYPES:
        raise MessageRejected("unsupported_type", "Unsupported file type")
    if size > settings.ATTACHMENT_MAX_MB * 1024 * 1024:
        raise MessageRejected("too_large", f"File too large (max {settings.ATTACHMENT_MAX_MB} MB)")
    if size == 0:
        raise MessageRejected("empty_file", "This file is empty")
    return extension


def attachment_create(*, session: ChatSession, name: str, data: bytes) -> Attachment:
    """Store an upload for the session's next message; documents are converted to text now.

    A file that cannot be read is kept as `failed` (with the reason) so the customer and
    staff can see it; the agent only ever reads `ready` text. Images are stored and shown;
    the model sees them only where it supports vision (agent.attachments.vision_enabled).
    """
    from django.core.files.base import ContentFile

    from agent.attachments import IMAGE_EXTENSIONS, AttachmentError, convert_attachment, image_type

    name = (name or "file").replace("/", "_").replace("\\", "_")[-200:]
    extension = check_attachment(name=name, size=len(data))
    mime, text, status, error = image_type(data), "", Attachment.Status.READY, ""
    if extension in IMAGE_EXTENSIONS and mime is None:
        raise MessageRejected("unsupported_type", "Unsupported file type")
    if mime is None:
        try:
            text, kind = convert_attachment(data, name)
            mime = f"text/x-{kind}"
        except AttachmentError as exc:
            status, error, mime = Attachment.Status.FAILED, exc.message[:255], "application/octet-stream"
    attachment = Attachment(session=session, original_name=name, content_type=mime, size=len(data),
                            text=text, status=status, error=error)
    attachment.file.save(f"{session.public_id.hex[:12]}-{extension}.{extension}", ContentFile(data), save=False)
    attachment.save()
    return attachment


def message_needs_reply(*, message: Message, created: bool) -> bool:
    """A new message, or a resend whose first attempt never got as far as starting a reply."""
    return created or not message.replies.exists()
