"""The chat page: sessions in a cookie, history, expiry, the plain-POST fallback, hand-over."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agent.fake_llm import Behaviour
from conversations import services
from conversations.models import ChatSession, Message
from conversations.views import COOKIE

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def test_opening_the_page_starts_a_session_in_an_httponly_lax_cookie(client):
    response = client.get("/")

    cookie = response.cookies[COOKIE]
    assert response.status_code == 200
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and not cookie["secure"]
    session = ChatSession.objects.get()
    assert session.token_hash == services.hash_token(cookie.value)
    assert 'ws-connect="/ws/chat/"' in response.content.decode()


def test_the_cookie_is_secure_when_the_site_runs_on_https(client, settings):
    settings.HTTPS = True

    response = client.get("/")

    assert response.cookies[COOKIE]["secure"]


def test_reopening_the_page_resumes_the_session_and_shows_its_history(client, chat):
    Message.objects.create(session=chat.session, role="user", content="Where is order 1001?")
    client.cookies[COOKIE] = chat.token

    response = client.get("/")

    assert ChatSession.objects.count() == 1
    assert "Where is order 1001?" in response.content.decode()


def test_an_expired_session_says_so_and_offers_a_new_chat(client, chat):
    ChatSession.objects.filter(pk=chat.session.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    client.cookies[COOKIE] = chat.token

    page = client.get("/").content.decode()
    restarted = client.post("/new/")

    assert "This chat has expired — start a new one." in page and 'action="/new/"' in page
    assert restarted.status_code == 302 and restarted.cookies[COOKIE].value != chat.token
    assert ChatSession.objects.count() == 2


def test_an_htmx_request_gets_only_the_conversation_fragment(client, chat):
    client.cookies[COOKIE] = chat.token

    html = client.get("/", HTTP_HX_REQUEST="true").content.decode()

    assert html.lstrip().startswith('<ol id="messages"') and "<html" not in html


def test_a_plain_post_saves_the_message_answers_it_and_redirects(client, chat, fake_llm):
    fake_llm.script(Behaviour(kind="text", text="Plain **HTTP** still works."))
    client.cookies[COOKIE] = chat.token

    response = client.post("/send/", {"content": "No socket here", "client_message_id": "p-1"})
    page = client.get("/").content.decode()

    message = Message.objects.get(client_message_id="p-1")
    assert response.status_code == 302 and response["Location"] == f"/#m-{message.pk}"
    assert "Plain <strong>HTTP</strong> still works." in page


def test_a_double_posted_form_is_saved_once(client, chat, fake_llm):
    client.cookies[COOKIE] = chat.token

    for _ in range(2):
        client.post("/send/", {"content": "Twice?", "client_message_id": "p-twice"})

    assert Message.objects.filter(session=chat.session, role="user").count() == 1
    assert len(fake_llm.requests) == 1


def test_a_rejected_plain_post_keeps_the_text_and_explains(client, chat):
    client.cookies[COOKIE] = chat.token

    response = client.post("/send/", {"content": "x" * 4001, "client_message_id": "p-long"})

    assert response.status_code == 400
    assert "at most 4000 characters" in response.content.decode() and "x" * 4001 in response.content.decode()


def test_talk_to_a_human_opens_an_escalation_and_shows_the_waiting_banner(client, chat):
    client.cookies[COOKIE] = chat.token

    response = client.post("/handover/", HTTP_HX_REQUEST="true")

    chat.session.refresh_from_db()
    assert chat.session.state == "waiting"
    assert chat.session.escalations.get().reason == "user_request"
    assert 'id="banner"' in response.content.decode() and "connecting you with a person" in response.content.decode()


def test_when_a_human_has_joined_the_banner_names_them_and_their_messages_are_theirs(client, chat):
    ChatSession.objects.filter(pk=chat.session.pk).update(state="human")
    Message.objects.create(session=chat.session, role="human", author_name="Dana", content="Hello from Dana")
    Message.objects.create(session=chat.session, role="system", content="Dana from support has joined")
    client.cookies[COOKIE] = chat.token

    html = client.get("/").content.decode()

    assert "Dana from support has joined." in html
    assert 'class="msg msg-human"' in html and 'class="msg msg-system"' in html


def test_a_grounded_reply_carries_the_help_centre_badge_and_links_its_sources(client, chat):
    question = Message.objects.create(session=chat.session, role="user", content="Refunds?")
    Message.objects.create(session=chat.session, role="assistant", reply_to=question, grounded=True,
                           content="From our help centre:\n\nRefunds take 5 days. [1]",
                           sources=[{"n": 1, "chunk_id": 7, "document_id": 3, "title": "Refunds", "heading": "Timing"}])
    client.cookies[COOKIE] = chat.token

    html = client.get("/").content.decode()

    assert "From our help centre</span>" in html
    assert 'href="/sources/7/?n=1"' in html and "Refunds › Timing" in html
