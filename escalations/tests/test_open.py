"""Opening an escalation: priority, SLA, summary, and what the user is told (queue, wait, hours)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from prometheus_client import REGISTRY

from escalations.models import Escalation
from escalations.services import escalation_notice, escalation_open
from escalations.tests.conftest import WEDNESDAY_10, make_chat

pytestmark = pytest.mark.django_db


def open_for(session, reason="user_request", priority="normal", now=WEDNESDAY_10, **kw) -> Escalation:
    return escalation_open(session_id=session.pk, reason=reason, priority=priority, now=now, **kw)


def notices(session) -> list[str]:
    return list(session.messages.filter(role="system").values_list("content", flat=True))


def test_opening_records_reason_priority_sla_and_an_audit_event(chat) -> None:
    escalation = open_for(chat, reason="risky_topic", priority="high", detail="risky topic 'legal': 'lawyer'")
    assert (escalation.reason, escalation.priority, escalation.status) == ("risky_topic", Escalation.Priority.HIGH, "open")
    assert escalation.detail == "risky topic 'legal': 'lawyer'"
    assert escalation.created_at == WEDNESDAY_10
    assert escalation.sla_due_at == WEDNESDAY_10 + timedelta(minutes=15)
    assert list(escalation.events.values_list("action", flat=True)) == ["opened"]


@pytest.mark.parametrize(("priority", "minutes"), [("urgent", 5), ("high", 15), ("normal", 60), ("low", 240), ("", 60)])
def test_the_sla_due_time_comes_from_settings_per_priority(chat, priority: str, minutes: int) -> None:
    assert open_for(chat, priority=priority).sla_due_at == WEDNESDAY_10 + timedelta(minutes=minutes)


def test_a_custom_sla_setting_takes_effect(chat, settings) -> None:
    settings.ESCALATION_SLA_MINUTES = {**settings.ESCALATION_SLA_MINUTES, "normal": 7}
    assert open_for(chat).sla_due_at == WEDNESDAY_10 + timedelta(minutes=7)


def test_the_summary_quotes_the_problem_and_the_latest_message_and_lists_identifiers(chat) -> None:
    summary = open_for(chat).summary
    assert "Where is my order A-10042?" in summary
    assert "I want a human" in summary
    assert "order A-10042" in summary
    assert "User asked for a human" in summary
    assert "2 with little support" in summary


def test_the_user_is_told_a_person_will_join_with_their_queue_position_and_wait(chat, published,
                                                                               django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        open_for(chat)
    (notice,) = notices(chat)
    assert notice == ("A person from our support team will join this chat. You are number 1 in the queue; "
                      "the expected wait is about 6 minutes.")
    message_id = chat.messages.get(role="system").pk
    assert (str(chat.public_id), "message", message_id) in published


def test_queue_position_counts_unassigned_escalations_due_earlier(db, bob, settings) -> None:
    settings.ESCALATION_AVG_HANDLE_MIN = 10
    first, second = open_for(make_chat("a")), open_for(make_chat("b"))
    Escalation.objects.filter(pk=second.pk).update(status="assigned", assignee=bob)  # being handled: not ahead
    third_chat = make_chat("c")
    open_for(third_chat, now=WEDNESDAY_10 + timedelta(minutes=1))
    assert "number 2 in the queue; the expected wait is about 20 minutes" in notices(third_chat)[0]
    urgent_chat = make_chat("d")
    urgent = open_for(urgent_chat, priority="urgent", now=WEDNESDAY_10 + timedelta(minutes=2))
    assert "number 1 in the queue" in notices(urgent_chat)[0]  # due in 5 minutes: ahead of everyone
    assert first.pk < urgent.pk


def test_long_waits_are_said_in_hours(db, settings) -> None:
    settings.ESCALATION_AVG_HANDLE_MIN = 70
    session = make_chat("a")
    escalation = open_for(session)
    assert escalation_notice(escalation=escalation, now=WEDNESDAY_10).endswith("about 1 hour 10 minutes.")


def test_a_second_request_in_the_same_chat_joins_the_open_escalation(chat) -> None:
    first = open_for(chat)
    again = open_for(chat, reason="negative_sentiment", priority="urgent")
    assert again.pk == first.pk and again.priority == Escalation.Priority.NORMAL
    assert len(notices(chat)) == 1


def test_outside_business_hours_the_user_learns_when_someone_answers_and_is_asked_for_an_email(chat, settings) -> None:
    settings.ESCALATION_BUSINESS_HOURS = "mon-fri 08:00-20:00, sat 09:00-17:00"
    settings.ESCALATION_TIME_ZONE = "Europe/Berlin"
    settings.ESCALATION_HOLIDAYS = ["2026-03-09"]
    saturday_evening = datetime(2026, 3, 7, 17, 30, tzinfo=dt_timezone.utc)  # 18:30 in Berlin
    open_for(chat, now=saturday_evening)
    (notice,) = notices(chat)
    assert "not available right now" in notice
    assert "Someone will answer on Tuesday 10 March at 08:00 (Europe/Berlin time)" in notice
    assert "Please type your email address" in notice
    assert "queue" not in notice


def test_outside_business_hours_a_known_email_is_confirmed_instead_of_asked_for(db, settings) -> None:
    settings.ESCALATION_BUSINESS_HOURS = "mon-fri 08:00-20:00"
    session = make_chat("hello there friends", email="ada@example.com")
    escalation = open_for(session, now=datetime(2026, 3, 4, 21, 0, tzinfo=dt_timezone.utc))
    notice = escalation_notice(escalation=escalation, now=datetime(2026, 3, 4, 21, 0, tzinfo=dt_timezone.utc))
    assert "Someone will answer tomorrow at 08:00 (UTC time). We will also reply by email to ada@example.com." in notice


def test_inside_business_hours_the_queue_is_shown(chat, settings) -> None:
    settings.ESCALATION_BUSINESS_HOURS = "mon-fri 08:00-20:00"
    open_for(chat, now=WEDNESDAY_10)
    assert "number 1 in the queue" in notices(chat)[0]


def test_opening_counts_the_escalation_by_reason_once_committed(chat, django_capture_on_commit_callbacks) -> None:
    labels = {"reason": "tool_failure", "priority": "normal"}
    before = REGISTRY.get_sample_value("supportdesk_escalations_total", labels) or 0
    with django_capture_on_commit_callbacks(execute=True):
        open_for(chat, reason="tool_failure")
        open_for(chat, reason="tool_failure")  # joins the first: not counted again
    assert REGISTRY.get_sample_value("supportdesk_escalations_total", labels) == before + 1


def test_the_bot_path_escalates_through_conversations(chat, published, django_capture_on_commit_callbacks) -> None:
    """conversations.services.session_escalate → escalation_open: the chat waits and the user is told."""
    from conversations.services import session_escalate

    with django_capture_on_commit_callbacks(execute=True):
        session_escalate(session=chat, reason="user_request", detail="asked", priority="normal")
    chat.refresh_from_db()
    assert chat.state == "waiting"
    assert Escalation.objects.get(session=chat).status == "open"
    assert "number 1 in the queue" in notices(chat)[0]
    assert (str(chat.public_id), "state", None) in published
