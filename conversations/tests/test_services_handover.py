"""Conversation services meeting the escalation side: takeovers and emails left for humans."""
from __future__ import annotations

import pytest

from agent.schema import AgentResponse
from conversations.models import ChatSession, Message
from conversations.services import message_create, reply_complete, reply_start, session_create, session_escalate

pytestmark = pytest.mark.django_db


def test_a_reply_interrupted_by_a_takeover_is_not_completed_afterwards():
    session = session_create().session
    question, _ = message_create(session=session, content="Where is my order?")
    reply = reply_start(session=session, user_message=question)
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.INTERRUPTED, content="Your order")
    late = AgentResponse(text="Your order shipped yesterday.", sources=[], confidence=0.9, mode="grounded")
    reply_complete(reply=reply, response=late, latency_ms=10)
    reply.refresh_from_db()
    assert reply.status == Message.Status.INTERRUPTED and reply.content == "Your order"


def test_an_email_typed_while_waiting_for_a_human_is_kept_at_once(django_capture_on_commit_callbacks):
    session = session_create().session
    with django_capture_on_commit_callbacks(execute=True):
        session_escalate(session=session, reason="user_request", priority="normal")
    session.refresh_from_db()
    assert session.state == ChatSession.State.WAITING
    message_create(session=session, content="you can reach me at jo@example.com")
    session.refresh_from_db()
    assert session.end_user_email == "jo@example.com"
