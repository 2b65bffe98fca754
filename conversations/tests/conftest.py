"""Chat test helpers: sessions, a socket client on the real ASGI app and channel layer, the fake LLM."""
from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest
from channels.testing import WebsocketCommunicator
from django.core.management import call_command

from agent.fake_llm import FakeLLM
from conversations import services
from conversations.views import COOKIE

ORIGIN = (b"origin", b"http://localhost")


@pytest.fixture(scope="session", autouse=True)
def _close_agent_thread_connections(django_db_setup, django_db_blocker):
    """The hub's worker threads keep connections; close them before the test database is dropped."""
    yield
    from conversations.hub import close_thread_connections

    with django_db_blocker.unblock():
        close_thread_connections()


@pytest.fixture(scope="session", autouse=True)
def warm_agent():
    """Load litellm and the embedding model once, so replies in tests are not timed with cold starts."""
    import litellm  # noqa: F401

    from knowledge.embeddings import encode_query

    encode_query("warm up")


@pytest.fixture(scope="session")
def fake_llm_server():
    with FakeLLM() as server:
        yield server


@pytest.fixture
def fake_llm(fake_llm_server, settings):
    """Answer with the fake OpenAI-compatible provider (litellm's real client code runs)."""
    fake_llm_server.reset()
    settings.LLM_MODEL = "openai/fake-model"
    settings.LLM_API_BASE = fake_llm_server.base_url
    settings.LLM_API_KEY = "test-key"
    settings.LLM_FALLBACK_MODELS = []
    return fake_llm_server


@pytest.fixture
def demo_help_centre(transactional_db):
    call_command("load_demo", stdout=open("/dev/null", "w"))


@pytest.fixture
def chat(transactional_db) -> services.NewSession:
    return services.session_create()


def cookie_header(token: str) -> tuple[bytes, bytes]:
    return (b"cookie", f"{COOKIE}={token}".encode())


def asgi_app():
    from supportdesk.asgi import application

    return application


async def open_socket(token: str | None) -> tuple[WebsocketCommunicator, bool]:
    headers = [ORIGIN] + ([cookie_header(token)] if token else [])
    communicator = WebsocketCommunicator(asgi_app(), "/ws/chat/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    return communicator, connected


async def frames_until(communicator: WebsocketCommunicator, done: Callable[[str], bool], timeout: float = 60) -> str:
    """Everything the server sends until `done(all text so far)` holds."""
    text = ""
    try:
        async with asyncio.timeout(timeout):
            while not done(text):
                text += await communicator.receive_from(timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"timed out; frames so far:\n{text[-3000:]}") from None
    return text


def complete(message_id: int | None = None) -> Callable[[str], bool]:
    """A rendered final assistant message (optionally a given one) is in the frames."""
    pattern = (rf'id="m-{message_id}"[^>]*data-status="(complete|interrupted)"' if message_id
               else r'class="msg msg-assistant[^"]*"[^>]*data-status="(complete|interrupted)"')
    return lambda text: re.search(pattern, text) is not None


def send_frame(content: str, client_message_id: str = "", **extra: object) -> dict:
    return {"action": "message", "content": content, "client_message_id": client_message_id, **extra}


def streamed_tokens(text: str, reply_id: int) -> list[str]:
    return re.findall(rf'<span hx-swap-oob="beforeend:#m-{reply_id}-text">(.*?)</span>', text, re.S)
