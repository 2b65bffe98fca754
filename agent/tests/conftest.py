"""Agent test fixtures: a small help centre, chats and the fake LLM (the fake order API: /conftest.py)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync

from agent.fake_llm import FakeLLM
from agent.orchestrator import run as agent_run
from agent.schema import AgentContext, AgentResponse, Final, Restart, Token
from conversations.services import message_create, session_create
from conversations.store import DbConversationStore
from knowledge.services import document_create

ARTICLES = {
    "Refunds": "# Refunds\n\n## Refund timing\n\nRefunds reach your original payment method within 5 to 10 "
               "business days after our warehouse receives the returned item.\n\n## Return shipping fee\n\n"
               "A return shipping fee of $4.95 is deducted unless the item was defective.",
    "Passwords": "# Passwords\n\n## Resetting your password\n\nClick 'Forgot password' on the sign-in page and "
                 "we email you a reset link. The link stays valid for 30 minutes.",
    "Shipping": "# Shipping\n\n## Delivery times\n\nStandard shipping takes 3 to 5 business days and is free on "
                "orders over $50. Express shipping takes 1 to 2 business days and costs $14.99.",
}


@pytest.fixture
def help_centre(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        for title, body in ARTICLES.items():
            document_create(data=body.encode(), filename=f"{title}.md", title=title)


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture
def llm(settings, fake_llm):
    """Point the agent at the fake provider through litellm's real OpenAI-compatible client."""
    settings.LLM_MODEL = "openai/fake-model"
    settings.LLM_API_BASE = fake_llm.base_url
    settings.LLM_API_KEY = "test-key"
    settings.LLM_FALLBACK_MODELS = []
    settings.LLM_CHUNK_TIMEOUT_S = 2.0
    return fake_llm


class Chat:
    """A chat session to which a test sends messages and collects the agent's events."""

    def __init__(self) -> None:
        self.session = session_create().session

    def context(self, text: str, request_id: str = "req-test", *, attachment_ids: tuple[int, ...] = ()) -> AgentContext:
        message, _ = message_create(session=self.session, content=text, attachment_ids=attachment_ids)
        store = DbConversationStore(session_id=self.session.pk, message_id=message.pk)
        return AgentContext(session_id=self.session.pk, session_public_id=str(self.session.public_id),
                            message_id=message.pk, text=text, store=store, request_id=request_id)

    def ask(self, text: str, *, attachment_ids: tuple[int, ...] = ()) -> tuple[list, AgentResponse]:
        events = async_to_sync(_collect)(self.context(text, attachment_ids=attachment_ids))
        final = events[-1]
        assert isinstance(final, Final)
        self.record_reply(final.response)
        return events[:-1], final.response

    def record_reply(self, response: AgentResponse) -> None:
        from conversations.models import Message

        Message.objects.create(session=self.session, role="assistant", content=response.text,
                               confidence=response.confidence)


async def _collect(ctx: AgentContext) -> list:
    return [event async for event in agent_run(ctx)]


@pytest.fixture
def chat(db) -> Chat:
    return Chat()


def streamed_text(events: list) -> str:
    text = ""
    for event in events:
        if isinstance(event, Restart):
            text = ""
        elif isinstance(event, Token):
            text += event.text
    return text


