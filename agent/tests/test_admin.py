"""Admin: staff edit the assistant's profile, and the next reply speaks with it."""
from __future__ import annotations

import pytest

from agent.models import AssistantProfile

pytestmark = pytest.mark.django_db


def test_an_edit_in_admin_reaches_the_next_reply_at_once(client, alice, chat, help_centre, llm,
                                                       django_capture_on_commit_callbacks):
    chat.ask("How long does a refund take?")  # the settings' profile is now cached
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/agent/assistantprofile/add/", {
            "persona": "You are Ada, Northwind's returns specialist.", "topics": "returns and refunds",
            "stay_on_topic": "on"})
    assert response.status_code == 302, response.content.decode()[:2000]

    chat.ask("And to Canada?")
    system = llm.requests[-1]["messages"][0]["content"]
    assert system.startswith("You are Ada, Northwind's returns specialist.") and "returns and refunds" in system


def test_there_is_only_one_profile(client, alice):
    AssistantProfile.objects.create(persona="You are Ada.")
    client.force_login(alice)
    assert client.get("/admin/agent/assistantprofile/add/").status_code == 403


def test_a_persona_longer_than_the_limit_is_refused_with_a_message(client, alice):
    client.force_login(alice)
    response = client.post("/admin/agent/assistantprofile/add/", {"persona": "x" * 4001, "topics": ""})
    assert response.status_code == 200 and "Ensure this value has at most 4000 characters" in response.content.decode()
    assert not AssistantProfile.objects.exists()


def test_staff_without_the_permission_cannot_edit_it(client, bob):
    client.force_login(bob)
    assert client.get("/admin/agent/assistantprofile/add/").status_code == 403
