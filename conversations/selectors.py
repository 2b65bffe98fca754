"""Reads on conversations: what the chat page, the socket and the API show."""
from __future__ import annotations


from django.db.models import QuerySet

from agent.sources import SourceView, cited_passage
from conversations.models import Attachment, ChatSession, Message

HISTORY_LIMIT = 200


def messages_after(*, session: ChatSession | int, after: int = 0) -> list[Message]:
    """The session's (or session id's) messages newer than `after`, oldest first, attachments included."""
    rows: QuerySet[Message] = (Message.objects.filter(session=session, id__gt=after)
                               .prefetch_related("attachments").order_by("id"))
    return list(rows[:HISTORY_LIMIT])


def message_of_session(*, session_id: int, message_id: int) -> Message | None:
    return Message.objects.filter(pk=message_id, session_id=session_id).prefetch_related("attachments").first()


def session_fresh(*, session_id: int) -> ChatSession:
    return ChatSession.objects.get(pk=session_id)


def human_name(*, session: ChatSession) -> str:
    """Who from support has joined: the last human message's author, else the assignee."""
    name = (Message.objects.filter(session=session, role=Message.Role.HUMAN).exclude(author_name="")
            .order_by("-id").values_list("author_name", flat=True).first())
    if name:
        return name
    escalation = session.escalations.filter(status="assigned").select_related("assignee").first()
    user = escalation.assignee if escalation else None
    return (user.get_short_name() or user.get_username()) if user else "Someone"


def chat_context(*, session: ChatSession) -> dict:
    """Everything the chat page renders for a session."""
    return {"session": session, "messages": messages_after(session=session),
            "state": session.state, "human_name": human_name(session=session) if session.state == "human" else ""}


def banner_context(*, session_id: int) -> dict:
    session = session_fresh(session_id=session_id)
    return {"session": session, "state": session.state,
            "human_name": human_name(session=session) if session.state == "human" else ""}


def attachment_of_session(*, session: ChatSession, attachment_id: int) -> Attachment | None:
    return Attachment.objects.filter(pk=attachment_id, session=session).first()


def source_passage(*, chunk_id: int, context: int = 1) -> SourceView | None:
    """A cited passage with its neighbours (help-centre documents only)."""
    return cited_passage(chunk_id=chunk_id, context=context)
