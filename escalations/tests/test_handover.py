"""Staff take a chat over, reply, add notes, resolve it or give it back to the bot."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from prometheus_client import REGISTRY

from conversations.models import Message
from escalations.models import Escalation, InternalNote
from escalations.services import (
    EscalationError,
    escalation_assign,
    escalation_note_add,
    escalation_open,
    escalation_reply,
    escalation_resolve,
    escalation_return,
    escalation_set_priority,
)
from escalations.tests.conftest import WEDNESDAY_10, grant

pytestmark = pytest.mark.django_db


@pytest.fixture
def escalation(chat) -> Escalation:
    chat.state = "waiting"
    chat.save(update_fields=["state"])
    return escalation_open(session_id=chat.pk, reason="user_request", priority="normal", now=WEDNESDAY_10)


def system_texts(escalation: Escalation) -> list[str]:
    return list(escalation.session.messages.filter(role="system").values_list("content", flat=True))


def test_taking_over_silences_the_bot_and_tells_the_user_who_joined(escalation, agent, published,
                                                                   django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        escalation = escalation_assign(escalation=escalation, assignee=agent, actor=agent)
    session = escalation.session
    session.refresh_from_db()
    assert (escalation.status, escalation.assignee, session.state) == ("assigned", agent, "human")
    assert not session.bot_may_reply()
    assert system_texts(escalation)[-1] == "Bob Baker from support has joined the chat."
    assert (str(session.public_id), "state", None) in published
    event = escalation.events.get(action="assigned")
    assert (event.actor, event.detail) == (agent, "to Bob Baker")


def test_taking_over_stops_a_streaming_bot_reply(escalation, agent, published, django_capture_on_commit_callbacks) -> None:
    session = escalation.session
    question = session.messages.create(role="user", content="and my refund?")
    streaming = session.messages.create(role="assistant", content="Refunds take", status="streaming", reply_to=question)
    with django_capture_on_commit_callbacks(execute=True):
        escalation_assign(escalation=escalation, assignee=agent, actor=agent)
    streaming.refresh_from_db()
    session.refresh_from_db()
    assert (streaming.status, streaming.content, session.state) == ("interrupted", "Refunds take", "human")
    assert (str(session.public_id), "message", streaming.pk) in published
    assert session.messages.filter(status="complete", role="assistant").count() == 2  # finished replies untouched


def test_assigning_again_to_the_same_person_posts_nothing_new(escalation, agent) -> None:
    escalation_assign(escalation=escalation, assignee=agent, actor=agent)
    escalation_assign(escalation=escalation, assignee=agent, actor=agent)
    assert len([t for t in system_texts(escalation) if "has joined" in t]) == 1
    assert escalation.events.filter(action="assigned").count() == 1


def test_an_agent_cannot_take_over_a_chat_assigned_to_someone_else(escalation, agent, dave) -> None:
    escalation_assign(escalation=escalation, assignee=dave, actor=dave)
    with pytest.raises(PermissionDenied, match="Dave is handling this conversation"):
        escalation_assign(escalation=escalation, assignee=agent, actor=agent)
    with pytest.raises(PermissionDenied):
        escalation_reply(escalation=escalation, author=agent, text="Hi, Bob here")
    assert Escalation.objects.get(pk=escalation.pk).assignee == dave


def test_the_reassign_permission_allows_a_take_over(escalation, agent, dave) -> None:
    escalation_assign(escalation=escalation, assignee=dave, actor=dave)
    agent = grant(agent, "reassign_escalation")
    escalation = escalation_assign(escalation=escalation, assignee=agent, actor=agent)
    assert escalation.assignee == agent
    assert escalation.events.filter(action="assigned").last().detail == "to Bob Baker (taken over from Dave)"


def test_an_agent_may_hand_their_own_chat_to_a_colleague(escalation, agent, dave) -> None:
    escalation_assign(escalation=escalation, assignee=agent, actor=agent)
    assert escalation_assign(escalation=escalation, assignee=dave, actor=agent).assignee == dave


def test_staff_without_escalation_permissions_cannot_take_over(escalation, bob) -> None:
    with pytest.raises(PermissionDenied):
        escalation_assign(escalation=escalation, assignee=bob, actor=bob)


def test_a_reply_appears_in_the_chat_under_the_staff_members_name(escalation, agent, published,
                                                                 django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        message = escalation_reply(escalation=escalation, author=agent, text="  Hi, I'm looking at it now.  ",
                                   now=WEDNESDAY_10 + timedelta(minutes=3))
    assert (message.role, message.content, message.author, message.author_name) == (
        "human", "Hi, I'm looking at it now.", agent, "Bob Baker")
    assert (str(escalation.session.public_id), "message", message.pk) in published
    escalation.refresh_from_db()
    assert escalation.assignee == agent  # replying takes the chat
    assert escalation.first_response_at == WEDNESDAY_10 + timedelta(minutes=3)
    assert escalation.events.filter(action="replied", actor=agent).exists()


def test_the_display_name_falls_back_to_the_username(escalation, bob) -> None:
    bob = grant(bob, "change_escalation", "reply_escalation")
    assert escalation_reply(escalation=escalation, author=bob, text="hello").author_name == "bob"


def test_the_first_reply_is_timed_once(escalation, agent, django_capture_on_commit_callbacks) -> None:
    labels = {"priority": "normal"}
    count_before = REGISTRY.get_sample_value("supportdesk_escalation_first_response_seconds_count", labels) or 0
    sum_before = REGISTRY.get_sample_value("supportdesk_escalation_first_response_seconds_sum", labels) or 0
    with django_capture_on_commit_callbacks(execute=True):
        escalation_reply(escalation=escalation, author=agent, text="one", now=WEDNESDAY_10 + timedelta(seconds=90))
        escalation_reply(escalation=escalation, author=agent, text="two", now=WEDNESDAY_10 + timedelta(seconds=200))
    assert REGISTRY.get_sample_value("supportdesk_escalation_first_response_seconds_count", labels) == count_before + 1
    assert REGISTRY.get_sample_value("supportdesk_escalation_first_response_seconds_sum", labels) == sum_before + 90
    escalation.refresh_from_db()
    assert escalation.first_response_at == WEDNESDAY_10 + timedelta(seconds=90)


def test_replying_needs_the_reply_permission(escalation, bob) -> None:
    bob = grant(bob, "view_escalation", "change_escalation")
    with pytest.raises(PermissionDenied):
        escalation_reply(escalation=escalation, author=bob, text="hello")
    assert not escalation.session.messages.filter(role="human").exists()


@pytest.mark.parametrize("text", ["", "   ", "x" * 4001])
def test_empty_or_overlong_replies_are_refused(escalation, agent, text: str) -> None:
    with pytest.raises(EscalationError):
        escalation_reply(escalation=escalation, author=agent, text=text)


def test_internal_notes_never_reach_the_users_chat(escalation, agent) -> None:
    before = list(escalation.session.messages.values_list("content", flat=True))
    note = escalation_note_add(escalation=escalation, author=agent, body="Customer sounds like a repeat fraudster")
    assert InternalNote.objects.get(escalation=escalation) == note and note.author == agent
    after = list(escalation.session.messages.values_list("content", flat=True))
    assert after == before
    assert not Message.objects.filter(content__icontains="fraudster").exists()
    assert escalation.events.filter(action="note", actor=agent).exists()


def test_returning_to_the_bot_tells_the_user_and_lets_the_bot_answer_again(escalation, agent, published,
                                                                          django_capture_on_commit_callbacks) -> None:
    escalation_assign(escalation=escalation, assignee=agent, actor=agent)
    with django_capture_on_commit_callbacks(execute=True):
        escalation = escalation_return(escalation=escalation, actor=agent)
    escalation.session.refresh_from_db()
    assert (escalation.status, escalation.session.state) == ("returned", "bot")
    assert escalation.resolved_at is not None
    assert system_texts(escalation)[-1].startswith("You are back with our virtual assistant.")
    assert (str(escalation.session.public_id), "state", None) in published
    assert escalation.events.filter(action="returned", actor=agent).exists()


def test_resolving_gives_the_chat_back_to_the_bot_by_default(escalation, agent) -> None:
    escalation = escalation_resolve(escalation=escalation, actor=agent)
    escalation.session.refresh_from_db()
    assert (escalation.status, escalation.session.state) == ("resolved", "bot")
    assert "Bob Baker marked this conversation as resolved" in system_texts(escalation)[-1]
    assert escalation.events.filter(action="resolved", actor=agent).exists()


def test_resolving_can_close_the_chat_instead(escalation, agent, settings) -> None:
    settings.ESCALATION_RESOLVE_STATE = "closed"
    escalation = escalation_resolve(escalation=escalation, actor=agent)
    escalation.session.refresh_from_db()
    assert escalation.session.state == "closed"
    assert "This chat is now closed" in system_texts(escalation)[-1]


def test_a_closed_escalation_cannot_be_answered_or_closed_again(escalation, agent) -> None:
    escalation_resolve(escalation=escalation, actor=agent)
    with pytest.raises(EscalationError):
        escalation_reply(escalation=escalation, author=agent, text="hello?")
    with pytest.raises(EscalationError):
        escalation_return(escalation=escalation, actor=agent)


def test_a_chat_assigned_to_someone_else_cannot_be_closed_without_reassign(escalation, agent, dave) -> None:
    escalation_assign(escalation=escalation, assignee=dave, actor=dave)
    with pytest.raises(PermissionDenied):
        escalation_resolve(escalation=escalation, actor=agent)
    assert Escalation.objects.get(pk=escalation.pk).status == "assigned"


def test_changing_the_priority_moves_the_sla_and_is_recorded(escalation, agent) -> None:
    escalation = escalation_set_priority(escalation=escalation, actor=agent, priority=Escalation.Priority.URGENT)
    assert escalation.priority == Escalation.Priority.URGENT
    assert escalation.sla_due_at == WEDNESDAY_10 + timedelta(minutes=5)
    assert escalation.events.get(action="priority").detail == "Normal → Urgent"


def test_a_new_escalation_after_a_return_starts_fresh(escalation, agent) -> None:
    escalation_return(escalation=escalation, actor=agent)
    again = escalation_open(session_id=escalation.session_id, reason="user_request", now=WEDNESDAY_10)
    assert again.pk != escalation.pk and again.status == "open"
