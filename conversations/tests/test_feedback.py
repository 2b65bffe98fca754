"""Thumbs up/down on replies, with an optional comment, and the admin list of rated replies."""
from __future__ import annotations

import pytest

from conversations.models import Message
from conversations.views import COOKIE

pytestmark = pytest.mark.django_db


@pytest.fixture
def exchange(chat):
    question = Message.objects.create(session=chat.session, role="user", content="Do you ship to Canada?")
    reply = Message.objects.create(session=chat.session, role="assistant", reply_to=question,
                                   content="We ship to the moon.")
    return question, reply


def test_a_thumbs_down_with_a_comment_is_stored(client, chat, exchange):
    client.cookies[COOKIE] = chat.token
    _, reply = exchange

    response = client.post(f"/messages/{reply.pk}/feedback/", {"value": "down", "comment": "Not the moon!"},
                           HTTP_HX_REQUEST="true")

    reply.refresh_from_db()
    assert (reply.feedback, reply.feedback_comment) == ("down", "Not the moon!")
    assert "Thanks for your feedback" in response.content.decode()


def test_feedback_on_another_sessions_reply_is_refused(client, exchange):
    client.get("/")  # a different visitor with a session of their own
    _, reply = exchange

    response = client.post(f"/messages/{reply.pk}/feedback/", {"value": "up"})

    reply.refresh_from_db()
    assert response.status_code == 400 and reply.feedback == ""


def test_the_admin_lists_thumbs_down_replies_with_their_question(client, alice, exchange):
    _, reply = exchange
    Message.objects.filter(pk=reply.pk).update(feedback="down", feedback_comment="Wrong country")
    client.force_login(alice)

    html = client.get("/admin/conversations/message/?rated=down").content.decode()

    assert "Do you ship to Canada?" in html and "We ship to the moon." in html and "Wrong country" in html
