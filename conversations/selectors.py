"""Reads on conversations: what the chat page, the socket and the API show."""
from __future__ import annotations

from dataclasses import dataclass

from django.apps import apps
from django.db.models import QuerySet

from conversations.models import Attachment, ChatSession, Message

HISTORY_LIMIT = 200


def messages_after(*, session: ChatSession, after: int = 0) -> list[Message]:
    """The session's messages newer than `after`, oldest first, attachments included."""
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


@dataclass(frozen=True)
class Passage:
    chunk_id: int
    text: str
    heading: str
    location: str
    cited: bool


@dataclass(frozen=True)
class SourceView:
    title: str
    heading: str
    passages: list[Passage]


def source_passage(*, chunk_id: int, context: int = 1) -> SourceView | None:
    """A cited chunk with its neighbours, only from ready documents of the default collection.

    Read through the app registry: conversations must not import knowledge (imports flow
    conversations → agent → knowledge), and this is a read-only view of public help pages.
    """
    chunk_model = apps.get_model("knowledge", "Chunk")
    chunk = (chunk_model.objects.select_related("document")
             .filter(pk=chunk_id, document__status="ready", document__collection="default").first())
    if chunk is None:
        return None
    nearby = chunk_model.objects.filter(document=chunk.document, ordinal__gte=chunk.ordinal - context,
                                        ordinal__lte=chunk.ordinal + context).order_by("ordinal")
    passages = [Passage(c.pk, c.text, c.heading_path, c.location, c.pk == chunk.pk) for c in nearby]
    return SourceView(title=chunk.document.title, heading=chunk.heading_path, passages=passages)
