"""The chat in real Chromium against a real Daphne server on the test database.

Daphne runs in a subprocess (pytest-django's live_server is WSGI-only, so no
WebSockets) with the test database and Redis, and the fake LLM provider running in
this process so each test can script the reply. Skipped without Chromium, except
under CI=true, where a missing browser fails.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from agent.fake_llm import Behaviour
from conversations import ratelimit
from conversations.models import ChatSession, Message

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(settings.BASE_DIR) / "var" / "test-artifacts"
SERVER_RATE = "30/m"
WAIT_MS = 60_000


def _require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Chromium not found at {CHROMIUM}; browser tests must run in CI (apt-get install chromium)")
    pytest.skip(f"Chromium not found at {CHROMIUM} — install it (apt-get install -y chromium) to run browser tests")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _database_url() -> str:
    db = connection.settings_dict
    host = db.get("OPTIONS", {}).get("host") or db.get("HOST") or ""
    if host.startswith("/"):
        return f"postgresql://{db['USER']}:{db.get('PASSWORD') or ''}@/{db['NAME']}?host={host}"
    return f"postgresql://{db['USER']}:{db.get('PASSWORD') or ''}@{host}:{db.get('PORT') or 5432}/{db['NAME']}"


def _wait_until_up(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("daphne did not start in time")


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, fake_llm_server):
    """Daphne on a free port against the test database, answering through the fake LLM."""
    _require_chromium()
    port = _free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "supportdesk.settings_test", "DATABASE_URL": _database_url(),
           "REDIS_URL": settings.REDIS_URL, "SECRET_KEY": settings.SECRET_KEY, "LLM_MODEL": "openai/fake-model",
           "LLM_API_BASE": fake_llm_server.base_url, "LLM_API_KEY": "test-key", "RATE_LIMIT_MESSAGES": SERVER_RATE,
           "RATE_LIMIT_SESSIONS": "1000/h", "RATE_LIMIT_UPLOADS": "100/h", "LOG_LEVEL": "ERROR",
           "ALLOWED_HOSTS": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                                "supportdesk.asgi:application"], cwd=settings.BASE_DIR, env=env)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}", process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    # Sync Playwright runs an event loop in this thread; the test's own ORM calls are still sync.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, server, fake_llm_server, settings):
    settings.RATE_LIMIT_MESSAGES = SERVER_RATE  # this process shares the server's counters
    fake_llm_server.reset()
    context = browser.new_context(base_url=server)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    yield page
    context.close()


def ask(page, text: str) -> None:
    page.fill("#content", text)
    page.press("#content", "Enter")


def last_reply(page):
    return page.locator("#messages article.msg-assistant").last


def wait_complete(page) -> None:
    page.wait_for_selector('#messages article.msg-assistant[data-status="complete"]')


def open_chat(page) -> None:
    page.goto("/")
    page.wait_for_selector("body[data-connected=true]")


def test_a_demo_question_streams_an_answer_with_a_citation(page, fake_llm_server):
    call_command("load_demo", stdout=open(os.devnull, "w"))
    fake_llm_server.script(Behaviour(kind="text", token_delay=0.08, text=(
        "Refunds go back to your original payment method once we have received and checked your return [1].")))
    open_chat(page)

    ask(page, "How long does a refund take?")
    page.wait_for_selector('article.msg-assistant[data-status="streaming"] .streamed:not(:empty)')
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-mid-answer.png"), full_page=True)
    streamed_partial = last_reply(page).inner_text()
    wait_complete(page)

    reply = last_reply(page)
    assert "received and checked your return" in reply.inner_text()
    assert len(streamed_partial) < len(reply.inner_text())  # it arrived in pieces
    citation = reply.locator("a.cite").first
    assert citation.get_attribute("href").startswith("/sources/")
    assert citation.get_attribute("target") == "_blank"
    assert "Assistant:" in page.inner_text("#announcer")
    page.goto(citation.get_attribute("href"))
    assert page.locator("mark").count() == 1 and page.locator("h1").inner_text()


def test_reloading_keeps_the_history(page, fake_llm_server):
    fake_llm_server.script(Behaviour(kind="text", text="Kept after a reload."))
    open_chat(page)
    ask(page, "Will you remember this?")
    wait_complete(page)

    page.reload()

    assert page.locator("#messages article.msg-user").inner_text().count("Will you remember this?") == 1
    assert "Kept after a reload." in last_reply(page).inner_text()
    assert page.locator("#messages article").count() == 2


def test_a_reply_completes_after_the_socket_drops_mid_reply(page, fake_llm_server):
    words = " ".join(f"w{i}" for i in range(30))
    fake_llm_server.script(Behaviour(kind="text", text=words, token_delay=0.15))
    open_chat(page)
    ask(page, "Say thirty words")
    page.wait_for_function("(document.querySelector('article.msg-assistant .streamed') || {}).textContent?.includes('w3')")

    # Drop the socket from under htmx, as a flaky network would.
    page.evaluate("document.getElementById('chat')['htmx-internal-data'].webSocket.socket.close()")
    page.wait_for_selector("#conn:not([hidden])")
    wait_complete(page)

    assert last_reply(page).locator(".body").inner_text().strip() == words
    assert page.locator("#messages article.msg-assistant").count() == 1
    assert Message.objects.get(role="assistant").status == "complete"


def test_a_pdf_attachment_reaches_the_agent_and_its_answer_is_shown(page, fake_llm_server, tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 10, "Order receipt: order number NW-55821, one walnut desk lamp.")
    path = tmp_path / "receipt.pdf"
    path.write_bytes(bytes(pdf.output()))
    fake_llm_server.script(Behaviour(kind="text", text="I can see order NW-55821 for a walnut desk lamp."))
    open_chat(page)

    page.set_input_files("#file-input", str(path))
    page.wait_for_selector("#uploads li[data-attachment-id]:not([data-attachment-id=''])")
    ask(page, "What did I order?")
    wait_complete(page)

    prompt = " ".join(str(m.get("content")) for m in fake_llm_server.requests[-1]["messages"])
    assert "NW-55821" in prompt and "walnut desk lamp" in prompt
    assert "NW-55821" in last_reply(page).inner_text()
    assert "receipt.pdf" in page.locator("#messages article.msg-user").inner_text()


def test_markup_in_a_user_message_and_in_a_reply_stays_inert(page, fake_llm_server):
    attack = '<img src=x onerror=alert(1)> [click me](javascript:alert(2)) <script>alert(3)</script>'
    fake_llm_server.script(Behaviour(kind="text", text=f"Echo: {attack} and [a real link](https://example.com)"))
    open_chat(page)

    ask(page, attack)
    wait_complete(page)
    page.wait_for_timeout(500)

    assert page.dialogs == []
    assert page.locator("#messages script, #messages img, #messages iframe").count() == 0
    hrefs = page.eval_on_selector_all("#messages a[href]", "els => els.map(e => e.getAttribute('href'))")
    assert not [h for h in hrefs if h.lower().startswith("javascript")]
    assert "https://example.com" in hrefs
    assert "<img src=x onerror=alert(1)>" in page.locator("#messages article.msg-user").inner_text()


def test_an_expired_session_shows_its_message_and_starts_afresh(page):
    open_chat(page)
    ChatSession.objects.update(expires_at=timezone.now())

    ask(page, "Still there?")
    page.wait_for_selector("#socket-problem:not([hidden])")
    assert "This chat has expired — start a new one." in page.inner_text("#socket-problem")
    page.reload()
    assert "This chat has expired — start a new one." in page.inner_text("#problem")

    page.click("#problem button")
    page.wait_for_selector("#composer")
    assert ChatSession.objects.count() == 2


def test_a_thumbs_down_with_a_comment_is_stored(page, fake_llm_server):
    fake_llm_server.script(Behaviour(kind="text", text="We only ship to the moon."))
    open_chat(page)
    ask(page, "Do you ship to Canada?")
    wait_complete(page)

    reply = last_reply(page)
    reply.locator("summary.thumb").click()
    reply.locator("textarea[name=comment]").fill("Canada is not the moon")
    reply.locator("button[value=down]").click()
    page.wait_for_selector(".feedback .thanks")

    stored = Message.objects.get(role="assistant")
    assert (stored.feedback, stored.feedback_comment) == ("down", "Canada is not the moon")


def test_over_the_rate_limit_the_message_is_refused_and_the_text_kept(page):
    open_chat(page)
    session = ChatSession.objects.get()
    limit, _ = ratelimit.split_rate(SERVER_RATE)
    for _ in range(limit):
        ratelimit.hit("messages", values=[ratelimit.session_key(session.public_id)])

    ask(page, "One message too many")
    page.wait_for_selector("#notice .error")

    assert "too fast — please try again in" in page.inner_text("#notice")
    assert page.input_value("#content") == "One message too many"
    assert not Message.objects.exists()
