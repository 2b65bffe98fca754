"""The queue in Django admin: permissions, live list, the escalation page, actions, replies, notes, audit."""
from __future__ import annotations

import pytest
from django.urls import reverse

from agent.models import AgentRun, ToolCall
from escalations.models import CannedReply, Escalation, EscalationEvent, InternalNote
from escalations.services import escalation_assign, escalation_open
from escalations.tests.conftest import grant, make_chat

pytestmark = pytest.mark.django_db
LIST_URL = reverse("admin:escalations_escalation_changelist")


@pytest.fixture
def escalation(chat) -> Escalation:
    return escalation_open(session_id=chat.pk, reason="user_request", priority="high")


def page(pk: int) -> str:
    return reverse("admin:escalations_escalation_change", args=[pk])


def act(client, escalation: Escalation, action: str, **data):
    return client.post(reverse("admin:escalations_escalation_act", args=[escalation.pk, action]), data)


def bulk(client, action: str, *escalations: Escalation, **data):
    return client.post(LIST_URL, {"action": action, "_selected_action": [e.pk for e in escalations], **data},
                       follow=True)


# --------------------------------------------------------------------------- permissions


def test_staff_without_escalation_permissions_get_403_everywhere(client, bob, escalation) -> None:
    client.force_login(bob)
    assert client.get(LIST_URL).status_code == 403
    assert client.get(page(escalation.pk)).status_code == 403
    assert client.get(reverse("admin:escalations_escalation_transcript", args=[escalation.pk])).status_code == 403
    assert client.post(reverse("admin:escalations_escalation_reply", args=[escalation.pk]),
                       {"text": "hi"}).status_code == 403
    assert act(client, escalation, "assign_me").status_code == 403
    assert not escalation.session.messages.filter(role="human").exists()


def test_outsiders_are_sent_to_the_login_page(client, charlie, escalation) -> None:
    client.force_login(charlie)
    response = client.get(page(escalation.pk))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_view_permission_shows_the_queue_but_no_actions_or_reply_box(client, bob, escalation) -> None:
    client.force_login(grant(bob, "view_escalation"))
    html = client.get(LIST_URL).content.decode()
    assert f"#{escalation.pk} · {escalation.session}" in html
    assert 'name="action"' not in html
    detail = client.get(page(escalation.pk)).content.decode()
    assert "I want a human" in detail
    assert "Send reply" not in detail and "Assign to me" not in detail
    assert act(client, escalation, "assign_me").status_code == 403


# --------------------------------------------------------------------------- the queue


def test_the_queue_lists_live_escalations_in_sla_order_with_their_details(client, agent, escalation) -> None:
    urgent = escalation_open(session_id=make_chat("someone hacked my account").pk, reason="risky_topic",
                             priority="urgent")
    done = escalation_open(session_id=make_chat("old issue please").pk, reason="manual")
    Escalation.objects.filter(pk=done.pk).update(status="resolved")
    client.force_login(agent)
    html = client.get(LIST_URL).content.decode()
    assert html.index(f"#{urgent.pk} ·") < html.index(f"#{escalation.pk} ·")
    assert f"#{done.pk} ·" not in html
    assert 'class="prio prio-4">Urgent' in html and 'class="prio prio-3">High' in html
    assert "sla sla-ok" in html
    assert "Risky topic" in html and "User asked for a human" in html
    assert "A person from our support team will join" in html  # the last message of the chat
    everything = client.get(LIST_URL + "?queue=all").content.decode()
    assert f"#{done.pk} ·" in everything


def test_overdue_and_nearly_due_slas_are_coloured(client, agent, escalation) -> None:
    from datetime import timedelta

    from django.utils import timezone

    near = escalation_open(session_id=make_chat("hello there hi").pk, reason="manual")
    Escalation.objects.filter(pk=escalation.pk).update(sla_due_at=timezone.now() - timedelta(minutes=3))
    Escalation.objects.filter(pk=near.pk).update(sla_due_at=timezone.now() + timedelta(minutes=2))
    client.force_login(agent)
    html = client.get(LIST_URL).content.decode()
    assert "sla sla-past" in html and "overdue" in html
    assert "sla sla-near" in html


def test_the_queue_polls_itself_with_htmx(client, agent, escalation) -> None:
    client.force_login(agent)
    html = client.get(LIST_URL).content.decode()
    assert 'id="escalation-queue"' in html and 'hx-trigger="every 3s' in html
    assert "htmx-2.0.11.min.js" in html
    newer = escalation_open(session_id=make_chat("talk to a person").pk, reason="user_request")
    polled = client.get(LIST_URL, headers={"HX-Request": "true"}).content.decode()
    assert f"#{newer.pk} ·" in polled


def test_the_queue_filters_by_reason_priority_and_assignee(client, agent, escalation) -> None:
    other = escalation_open(session_id=make_chat("useless bot honestly").pk, reason="negative_sentiment",
                            priority="low")
    client.force_login(agent)
    by_reason = client.get(LIST_URL + "?reason__exact=negative_sentiment").content.decode()
    assert f"#{other.pk} ·" in by_reason and f"#{escalation.pk} ·" not in by_reason
    by_priority = client.get(LIST_URL + "?priority__exact=3").content.decode()
    assert f"#{escalation.pk} ·" in by_priority and f"#{other.pk} ·" not in by_priority
    escalation_assign(escalation=escalation, assignee=agent, actor=agent)
    mine = client.get(LIST_URL + f"?assignee__id__exact={agent.pk}").content.decode()
    assert f"#{escalation.pk} ·" in mine and f"#{other.pk} ·" not in mine


# --------------------------------------------------------------------------- the escalation page


def test_the_page_shows_transcript_summary_sources_and_tool_calls(client, agent, escalation) -> None:
    session = escalation.session
    reply = session.messages.filter(role="assistant").first()
    reply.sources = [{"n": 1, "title": "Shipping times", "heading": "Europe"}]
    reply.save()
    run = AgentRun.objects.create(session=session, reply=reply, mode="grounded")
    ToolCall.objects.create(run=run, tool="knowledge_search", result_summary="3 results", duration_ms=12)
    CannedReply.objects.create(title="Greeting", body="Hi, I'm here to help.")
    client.force_login(agent)
    html = client.get(page(escalation.pk)).content.decode()
    assert "Where is my order A-10042?" in html
    assert "Shipping times › Europe" in html
    assert "<code>knowledge_search</code>" in html and "3 results" in html
    assert "Customer&#x27;s first message" in html or "Customer's first message" in html
    assert 'data-body="Hi, I&#x27;m here to help."' in html
    assert 'hx-trigger="every 2s"' in html


def test_the_transcript_fragment_shows_new_user_messages(client, agent, escalation) -> None:
    client.force_login(agent)
    escalation.session.messages.create(role="user", content="Hello? Anyone there?")
    response = client.get(reverse("admin:escalations_escalation_transcript", args=[escalation.pk]),
                          headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200 and "Hello? Anyone there?" in html
    assert "<html" not in html and 'id="transcript"' in html


# --------------------------------------------------------------------------- actions


def test_assign_to_me_takes_the_chat_and_the_user_is_told(client, agent, escalation) -> None:
    client.force_login(agent)
    response = act(client, escalation, "assign_me")
    assert response.status_code == 302
    escalation.refresh_from_db()
    escalation.session.refresh_from_db()
    assert (escalation.assignee, escalation.status, escalation.session.state) == (agent, "assigned", "human")
    assert escalation.session.messages.filter(role="system", content="Bob Baker from support has joined the chat.").exists()


def test_assign_to_me_as_a_bulk_action(client, agent, escalation) -> None:
    second = escalation_open(session_id=make_chat("operator please now").pk, reason="user_request")
    client.force_login(agent)
    html = bulk(client, "assign_to_me", escalation, second).content.decode()
    assert "2 escalation(s) updated." in html
    assert set(Escalation.objects.values_list("assignee", flat=True)) == {agent.pk}


def test_taking_over_someone_elses_chat_is_refused_without_reassign(client, agent, dave, escalation) -> None:
    escalation_assign(escalation=escalation, assignee=dave, actor=dave)
    client.force_login(agent)
    assert act(client, escalation, "assign_me").status_code == 403
    assert "Dave is handling this conversation" in bulk(client, "assign_to_me", escalation).content.decode()
    assert Escalation.objects.get(pk=escalation.pk).assignee == dave
    client.force_login(grant(agent, "reassign_escalation"))
    assert act(client, escalation, "assign_me").status_code == 302
    assert Escalation.objects.get(pk=escalation.pk).assignee == agent


def test_assign_to_someone_asks_whom_then_assigns(client, agent, dave, escalation) -> None:
    client.force_login(agent)
    form = bulk(client, "assign_to", escalation).content.decode()
    assert "Assign 1 escalation(s) to:" in form and f'value="{dave.pk}"' in form
    html = bulk(client, "assign_to", escalation, apply="1", assignee=str(dave.pk)).content.decode()
    assert "1 escalation(s) updated." in html
    assert Escalation.objects.get(pk=escalation.pk).assignee == dave


def test_assigning_to_someone_without_escalation_rights_is_refused(client, agent, charlie, escalation) -> None:
    client.force_login(agent)
    act(client, escalation, "assign", assignee=str(charlie.pk))
    assert Escalation.objects.get(pk=escalation.pk).assignee is None


def test_resolve_from_the_page(client, agent, escalation) -> None:
    client.force_login(agent)
    assert act(client, escalation, "resolve")["Location"] == LIST_URL
    escalation.refresh_from_db()
    escalation.session.refresh_from_db()
    assert (escalation.status, escalation.session.state) == ("resolved", "bot")


def test_return_to_the_bot_as_a_bulk_action(client, agent, escalation) -> None:
    escalation_assign(escalation=escalation, assignee=agent, actor=agent)
    client.force_login(agent)
    bulk(client, "return_to_bot", escalation)
    escalation.refresh_from_db()
    escalation.session.refresh_from_db()
    assert (escalation.status, escalation.session.state) == ("returned", "bot")
    assert escalation.session.messages.filter(role="system", content__startswith="You are back").exists()


def test_change_priority_from_the_page_and_in_bulk(client, agent, escalation) -> None:
    client.force_login(agent)
    act(client, escalation, "priority", priority="4")
    assert Escalation.objects.get(pk=escalation.pk).priority == Escalation.Priority.URGENT
    bulk(client, "priority_low", escalation)
    assert Escalation.objects.get(pk=escalation.pk).priority == Escalation.Priority.LOW
    act(client, escalation, "priority", priority="9")  # refused, nothing changes
    assert Escalation.objects.get(pk=escalation.pk).priority == Escalation.Priority.LOW


# --------------------------------------------------------------------------- replies and notes


def test_a_reply_reaches_the_chat_under_the_staff_name_and_is_published(client, agent, escalation, published,
                                                                       django_capture_on_commit_callbacks) -> None:
    client.force_login(agent)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:escalations_escalation_reply", args=[escalation.pk]),
                               {"text": "Hi, Bob here. Checking your order."}, headers={"HX-Request": "true"})
    message = escalation.session.messages.get(role="human")
    assert (message.content, message.author_name, message.author) == ("Hi, Bob here. Checking your order.",
                                                                      "Bob Baker", agent)
    assert (str(escalation.session.public_id), "message", message.pk) in published
    assert "Hi, Bob here. Checking your order." in response.content.decode()  # the refreshed transcript


def test_a_reply_without_javascript_redirects_back_to_the_page(client, agent, escalation) -> None:
    client.force_login(agent)
    response = client.post(reverse("admin:escalations_escalation_reply", args=[escalation.pk]), {"text": "Hello"})
    assert response.status_code == 302 and response["Location"] == page(escalation.pk)


def test_an_empty_reply_shows_an_error_in_the_transcript(client, agent, escalation) -> None:
    client.force_login(agent)
    response = client.post(reverse("admin:escalations_escalation_reply", args=[escalation.pk]), {"text": " "},
                           headers={"HX-Request": "true"})
    assert "Type a reply first." in response.content.decode()
    assert not escalation.session.messages.filter(role="human").exists()


def test_internal_notes_show_to_staff_but_never_in_the_chat(client, agent, escalation) -> None:
    client.force_login(agent)
    client.post(reverse("admin:escalations_escalation_note", args=[escalation.pk]),
                {"body": "VIP customer, refund without questions"})
    note = InternalNote.objects.get(escalation=escalation)
    assert note.author == agent
    assert "VIP customer, refund without questions" in client.get(page(escalation.pk)).content.decode()
    assert not escalation.session.messages.filter(content__icontains="VIP customer").exists()
    fragment = client.get(reverse("admin:escalations_escalation_transcript", args=[escalation.pk])).content.decode()
    assert "VIP customer" not in fragment


def test_every_staff_action_leaves_an_audit_event(client, agent, escalation) -> None:
    client.force_login(agent)
    act(client, escalation, "assign_me")
    client.post(reverse("admin:escalations_escalation_reply", args=[escalation.pk]), {"text": "Hello"})
    client.post(reverse("admin:escalations_escalation_note", args=[escalation.pk]), {"body": "note"})
    act(client, escalation, "priority", priority="1")
    act(client, escalation, "return")
    events = list(EscalationEvent.objects.filter(escalation=escalation).values_list("action", "actor"))
    assert events == [("opened", None), ("assigned", agent.pk), ("replied", agent.pk), ("note", agent.pk),
                      ("priority", agent.pk), ("returned", agent.pk)]
    assert all(e.created_at for e in EscalationEvent.objects.all())


def test_escalations_cannot_be_added_or_deleted_by_hand(client, alice, escalation) -> None:
    client.force_login(alice)
    assert client.get(reverse("admin:escalations_escalation_add")).status_code == 403
    assert "delete_selected" not in client.get(LIST_URL).content.decode()
