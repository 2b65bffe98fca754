"""The JSON API: sessions, history, messages as JSON or Server-Sent Events, and its errors."""
from __future__ import annotations

import json
import uuid

import pytest
from asgiref.sync import async_to_sync

from agent.fake_llm import Behaviour
from conversations.models import ChatSession, Message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def start(client) -> dict:
    response = client.post("/api/sessions", data={}, content_type="application/json")
    assert response.status_code == 201
    return response.json()


def bearer(session: dict) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {session['token']}"}


def post_message(client, session: dict, body: object, **extra):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(f"/api/sessions/{session['session_id']}/messages", data=data,
                       content_type="application/json", **bearer(session), **extra)


async def collect(chunks) -> list[bytes]:
    return [chunk async for chunk in chunks]


def error_code(response) -> str:
    return response.json()["error"]["code"]


def test_creating_a_session_returns_its_id_token_and_expiry_and_stores_only_a_hash(client):
    session = start(client)

    row = ChatSession.objects.get(public_id=session["session_id"])
    assert session["token"] and session["expires_at"]
    assert row.token_hash != session["token"] and len(row.token_hash) == 64


def test_a_message_gets_the_reply_with_its_sources_and_no_escalation(client, fake_llm):
    fake_llm.script(Behaviour(kind="text", text="Returns are free within 30 days."))
    session = start(client)

    response = post_message(client, session, {"content": "Can I return this?", "client_message_id": "a-1"})

    body = response.json()
    assert response.status_code == 200
    assert body["message"]["content"] == "Can I return this?" and body["message"]["role"] == "user"
    assert body["reply"]["content"] == "Returns are free within 30 days."
    assert body["reply"]["sources"] == [] and body["escalation"] is None
    assert Message.objects.filter(session__public_id=session["session_id"]).count() == 2


def test_resending_the_same_client_message_id_returns_the_same_exchange(client, fake_llm):
    fake_llm.script(Behaviour(kind="text", text="Only once."))
    session = start(client)
    first = post_message(client, session, {"content": "Hi", "client_message_id": "dup"}).json()

    again = post_message(client, session, {"content": "Hi", "client_message_id": "dup"}).json()

    assert again["message"]["id"] == first["message"]["id"] and again["reply"]["id"] == first["reply"]["id"]
    assert len(fake_llm.requests) == 1


def test_asking_for_a_person_reports_the_escalation(client):
    session = start(client)

    body = post_message(client, session, {"content": "I want to talk to a human agent please"}).json()

    assert body["escalation"] is not None and body["escalation"]["reason"]


def test_the_history_lists_the_messages_in_order(client, fake_llm):
    session = start(client)
    post_message(client, session, {"content": "First"})

    response = client.get(f"/api/sessions/{session['session_id']}/messages", **bearer(session))

    assert [m["role"] for m in response.json()["messages"]] == ["user", "assistant"]


def test_with_accept_event_stream_the_reply_streams_as_server_sent_events(client, fake_llm):
    fake_llm.script(Behaviour(kind="text", text="Streaming over SSE works nicely."))
    session = start(client)

    response = post_message(client, session, {"content": "Stream please"}, HTTP_ACCEPT="text/event-stream")
    raw = b"".join(async_to_sync(collect)(response.streaming_content)).decode()

    assert response["Content-Type"].startswith("text/event-stream")
    blocks = [b for b in raw.split("\n\n") if b]
    kinds = [b.split("\n")[0] for b in blocks]
    assert kinds.count("event: token") >= 3 and kinds[-1] == "event: done"
    tokens = [json.loads(b.split("\n")[1][len("data: "):])["text"] for b in blocks if b.startswith("event: token")]
    assert "".join(tokens) == "Streaming over SSE works nicely."
    final = json.loads(blocks[-1].split("\n")[1][len("data: "):])
    assert final["reply"]["content"] == "Streaming over SSE works nicely." and final["escalation"] is None


@pytest.mark.parametrize("body, code", [
    ("{not json", "malformed_json"),
    ("[1, 2]", "malformed_json"),
    ({"content": 42}, "wrong_type"),
    ({"content": "hi", "client_message_id": ["x"]}, "wrong_type"),
    ({"content": "   "}, "empty"),
    ({"content": "x" * 4001}, "invalid"),
])
def test_bad_bodies_are_refused_with_a_json_400(client, body, code):
    session = start(client)

    response = post_message(client, session, body)

    assert response.status_code == 400 and error_code(response) == code


def test_a_body_over_64_kb_is_refused_with_413(client):
    session = start(client)

    response = post_message(client, session, {"content": "x" * (70 * 1024)})

    assert response.status_code == 413 and error_code(response) == "too_large"


def test_a_wrong_or_missing_token_is_401(client):
    session = start(client)
    url = f"/api/sessions/{session['session_id']}/messages"

    missing = client.get(url)
    wrong = client.get(url, HTTP_AUTHORIZATION="Bearer nope")

    assert (missing.status_code, error_code(missing)) == (401, "missing")
    assert (wrong.status_code, error_code(wrong)) == (401, "invalid")


def test_a_token_cannot_open_another_session(client):
    alice, bob = start(client), start(client)

    response = client.get(f"/api/sessions/{bob['session_id']}/messages", **bearer(alice))

    assert response.status_code == 403 and error_code(response) == "forbidden"


@pytest.mark.parametrize("session_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_an_unknown_session_is_a_json_404(client, session_id):
    session = start(client)

    response = client.get(f"/api/sessions/{session_id}/messages", **bearer(session))

    assert response.status_code == 404 and error_code(response) == "not_found"


def test_a_wrong_method_is_a_json_405(client):
    response = client.get("/api/sessions")

    assert response.status_code == 405 and error_code(response) == "method_not_allowed"


def test_session_creation_is_rate_limited_per_ip(client, settings):
    settings.RATE_LIMIT_SESSIONS = "2/h"
    start(client), start(client)

    response = client.post("/api/sessions", data={}, content_type="application/json")

    assert response.status_code == 429 and "try again in" in response.json()["error"]["message"]


def test_the_openapi_schema_describes_the_endpoints(client):
    schema = client.get("/api/openapi.json").json()

    assert schema["openapi"].startswith("3.")
    assert {"/api/sessions", "/api/sessions/{session_id}/messages"} <= set(schema["paths"])


def test_a_session_started_with_an_email_may_look_up_that_customers_order(client, fake_llm, order_service):
    order_service.default = {"id": "NW-100234", "status": "Shipped", "customer_email": "jane@example.com"}
    fake_llm.script(Behaviour(kind="tool_call", tool_name="order_status", tool_args={"order_id": "NW-100234"}),
                    Behaviour(kind="text", text="It has shipped."))
    session = client.post("/api/sessions", data={"email": "Jane@Example.com"}, content_type="application/json").json()

    post_message(client, session, {"content": "Where is my order NW-100234?"})

    tool_message = fake_llm.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool" and '"Shipped"' in tool_message["content"]
