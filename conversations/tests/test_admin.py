"""Staff read a message's agent audit trail (the run and its tool calls) inline in admin."""
from __future__ import annotations

import json

import pytest

from agent.fake_llm import Behaviour
from conversations.models import Message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture
def answered(client, fake_llm) -> tuple[Message, Message]:
    """A real exchange through the API: the agent's run and tool calls are written as in production."""
    fake_llm.script(Behaviour(kind="text", text="Returns are free within 30 days."))
    session = client.post("/api/sessions", data={}, content_type="application/json").json()
    client.post(f"/api/sessions/{session['session_id']}/messages", content_type="application/json",
                data=json.dumps({"content": "Can I return this?"}),
                HTTP_AUTHORIZATION=f"Bearer {session['token']}")
    client.logout()
    reply = Message.objects.get(session__public_id=session["session_id"], role="assistant")
    return reply.reply_to, reply


@pytest.mark.parametrize("which", ["question", "reply"])
def test_a_message_shows_the_agent_run_and_its_tool_calls_inline(client, alice, answered, which):
    question, reply = answered
    client.force_login(alice)

    html = client.get(f"/admin/conversations/message/{(question if which == 'question' else reply).pk}/change/")

    page = html.content.decode()
    assert html.status_code == 200
    heading = "Agent run answering this message" if which == "question" else "Agent run that wrote this reply"
    assert page.count(heading + ":") == 1, "one run, and no empty form to add another"
    for tool in ("memory", "attachments", "knowledge_search", "escalation_check"):
        assert f"<td>{tool}</td>" in page, tool
    assert "openai/fake-model" in page and "Complete" in page


def test_an_outsider_cannot_read_the_audit(client, charlie, answered):
    question, _ = answered
    client.force_login(charlie)

    response = client.get(f"/admin/conversations/message/{question.pk}/change/")

    assert response.status_code == 302 and "/admin/login/" in response["Location"]
