"""The beat job: SLA breaches are marked and counted once; emails left out of hours are stored."""
from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from escalations.models import Escalation
from escalations.services import escalation_open, escalation_reply, escalation_sla_sweep, escalations_sweep
from escalations.tasks import sweep
from escalations.tests.conftest import WEDNESDAY_10, make_chat

pytestmark = pytest.mark.django_db


def breaches(priority: str) -> float:
    return REGISTRY.get_sample_value("supportdesk_escalation_sla_breaches_total", {"priority": priority}) or 0


def open_at(priority: str = "normal", **kw) -> Escalation:
    return escalation_open(session_id=make_chat("help me please now", **kw).pk, reason="user_request",
                           priority=priority, now=WEDNESDAY_10)


def test_an_unanswered_escalation_past_its_sla_is_counted_once() -> None:
    escalation = open_at("high")  # due at 10:15
    before = breaches("high")
    assert escalation_sla_sweep(now=WEDNESDAY_10 + timedelta(minutes=14)) == 0
    assert escalation_sla_sweep(now=WEDNESDAY_10 + timedelta(minutes=16)) == 1
    assert escalation_sla_sweep(now=WEDNESDAY_10 + timedelta(minutes=30)) == 0
    escalation.refresh_from_db()
    assert escalation.breached_at == WEDNESDAY_10 + timedelta(minutes=16)
    assert breaches("high") == before + 1
    assert escalation.events.filter(action="sla_breached").count() == 1


def test_answered_or_closed_escalations_do_not_breach(agent) -> None:
    answered, closed = open_at(), open_at()
    escalation_reply(escalation=answered, author=agent, text="Hi!", now=WEDNESDAY_10 + timedelta(minutes=5))
    Escalation.objects.filter(pk=closed.pk).update(status="resolved")
    assert escalation_sla_sweep(now=WEDNESDAY_10 + timedelta(hours=5)) == 0


def test_a_first_reply_after_the_sla_counts_the_breach_even_before_the_sweep(agent,
                                                                            django_capture_on_commit_callbacks) -> None:
    escalation = open_at("urgent")  # due at 10:05
    before = breaches("urgent")
    with django_capture_on_commit_callbacks(execute=True):
        escalation_reply(escalation=escalation, author=agent, text="Sorry!", now=WEDNESDAY_10 + timedelta(minutes=9))
    assert escalation_sla_sweep(now=WEDNESDAY_10 + timedelta(minutes=10)) == 0
    escalation.refresh_from_db()
    assert escalation.breached_at == WEDNESDAY_10 + timedelta(minutes=9)
    assert breaches("urgent") == before + 1


def test_the_sweep_stores_an_email_the_user_left_after_the_handover(published) -> None:
    escalation = open_at()
    session = escalation.session
    session.messages.create(role="user", content="sure, it's Ada.L+shop@example.co.uk thanks",
                            created_at=WEDNESDAY_10 + timedelta(minutes=1))
    sweep.delay()
    session.refresh_from_db()
    assert session.end_user_email == "Ada.L+shop@example.co.uk"
    assert session.messages.filter(role="system", content__contains="we will reply to Ada.L+shop@example.co.uk").exists()
    sweep.delay()  # nothing new the second time
    assert session.messages.filter(role="system", content__contains="we will reply to").count() == 1


def test_an_email_given_before_the_handover_or_already_known_is_not_taken(db) -> None:
    session = make_chat("my email is old@example.com, where is my order?")
    session.messages.update(created_at=WEDNESDAY_10)
    escalation_open(session_id=session.pk, reason="user_request", now=WEDNESDAY_10 + timedelta(minutes=5))
    escalations_sweep(now=WEDNESDAY_10 + timedelta(minutes=6))
    session.refresh_from_db()
    assert session.end_user_email == ""
    known = open_at(email="known@example.com")
    known.session.messages.create(role="user", content="other@example.com", created_at=WEDNESDAY_10 + timedelta(minutes=1))
    escalations_sweep(now=WEDNESDAY_10 + timedelta(minutes=6))
    known.session.refresh_from_db()
    assert known.session.end_user_email == "known@example.com"


def test_the_sweep_sets_the_queue_size_gauge(agent) -> None:
    open_at(), open_at()
    escalation_reply(escalation=open_at(), author=agent, text="on it")
    escalations_sweep(now=WEDNESDAY_10)
    assert REGISTRY.get_sample_value("supportdesk_escalation_queue_size", {"status": "open"}) == 2
    assert REGISTRY.get_sample_value("supportdesk_escalation_queue_size", {"status": "assigned"}) == 1


def test_the_sweep_is_on_the_beat_schedule(settings) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["escalation-sweep"]
    assert entry["task"] == "escalations.tasks.sweep" == sweep.name
    assert entry["schedule"] <= 60
