"""End to end in two real Chromium contexts: a customer asks for a person, staff answer from the admin queue.

Runs Daphne (the real ASGI app: chat page, socket, admin) in a subprocess on the test database.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.db import connection

# One definition of where Chromium is and how a missing one is treated (skip, or fail under CI=true).
from conversations.tests.test_browser import CHROMIUM, CHROMIUM_ARGS, _free_port, _require_chromium
from escalations.tests.conftest import AGENT_PERMS, grant

TIMEOUT_MS = 20_000

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _server_env() -> dict[str, str]:
    from supportdesk.launcher import _database_url

    db = {**settings.DATABASES["default"], "NAME": connection.settings_dict["NAME"]}
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "supportdesk.settings_test", "DATABASE_URL": _database_url(db),
            "REDIS_URL": settings.REDIS_URL, "SECRET_KEY": settings.SECRET_KEY, "VAR_DIR": str(settings.VAR_DIR),
            "ESCALATION_BUSINESS_HOURS": "24/7", "LLM_MODEL": "", "LOG_LEVEL": "WARNING"}


@pytest.fixture
def daphne_server(transactional_db) -> Iterator[str]:
    """The whole app under Daphne on a free port, sharing this test's database."""
    _require_chromium()
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                                "supportdesk.asgi:application"], cwd=settings.BASE_DIR, env=_server_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if process.poll() is not None:
            pytest.fail("Daphne did not start: " + process.stderr.read().decode()[-2000:])
        time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def help_centre_and_agent(transactional_db, bob) -> None:
    """One help-centre article and bob as a support agent; set up before Playwright starts its event loop."""
    from knowledge.services import document_create

    article = settings.BASE_DIR / "knowledge" / "demo" / "05-shipping-options-and-delivery-times.md"
    document_create(data=article.read_bytes(), filename=article.name, title="Shipping options and delivery times")
    bob.first_name, bob.last_name = "Bob", "Baker"
    bob.save()
    grant(bob, *AGENT_PERMS)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_a_customer_asks_for_a_person_and_staff_answer_live_then_return_the_chat_to_the_bot(
        daphne_server: str, help_centre_and_agent, browser) -> None:
    from playwright.sync_api import expect

    customer, staff = browser.new_context().new_page(), browser.new_context().new_page()
    for page in (customer, staff):
        page.set_default_timeout(TIMEOUT_MS)

    # Staff sign in and keep the queue open.
    staff.goto(f"{daphne_server}/admin/login/?next=/admin/escalations/escalation/")
    staff.fill("#id_username", "bob")
    staff.fill("#id_password", "bob-password")
    staff.click("input[type=submit]")
    expect(staff.locator("#escalation-queue")).to_be_attached()
    expect(staff.locator("#result_list")).to_have_count(0)  # no escalations yet

    # The customer asks for a person and is told where they are in the queue.
    customer.goto(daphne_server + "/")
    customer.wait_for_selector("body[data-connected=true]")
    customer.fill("#content", "I want to talk to a person please")
    customer.click("#send")
    messages = customer.locator("#messages")
    expect(messages).to_contain_text("You are number 1 in the queue", timeout=TIMEOUT_MS * 2)

    # It appears in the admin queue without a reload; staff open it and take it over.
    row_link = staff.locator("#result_list a", has_text="Chat")
    expect(row_link).to_be_visible()
    staff.locator("#result_list").get_by_text("User asked for a human").wait_for()
    row_link.first.click()
    expect(staff.locator("#transcript")).to_contain_text("I want to talk to a person please")
    staff.click("input[value='Assign to me']")
    expect(staff.locator("#esc-assignee")).to_have_text("Bob Baker")
    expect(messages).to_contain_text("Bob Baker from support has joined")

    # The staff reply reaches the customer's open page live, under the staff member's name.
    staff.fill("#reply-text", "Hi, Bob here. Let me check that for you.")
    staff.click("input[value='Send reply']")
    expect(staff.locator("#transcript")).to_contain_text("Hi, Bob here.")
    human = customer.locator(".msg-human")
    expect(human).to_contain_text("Hi, Bob here. Let me check that for you.")
    expect(human).to_contain_text("Bob Baker")

    # The customer writes while a human owns the chat: the staff transcript updates, the bot stays silent.
    assistant_replies = customer.locator(".msg-assistant")
    bot_count = assistant_replies.count()
    customer.fill("#content", "Thanks, my order number is A-10042")
    customer.click("#send")
    expect(staff.locator("#transcript")).to_contain_text("my order number is A-10042")
    customer.wait_for_timeout(1500)
    assert assistant_replies.count() == bot_count

    # Staff hand the chat back; the bot answers the next question.
    staff.click("input[value='Return to bot']")
    expect(messages).to_contain_text("You are back with our virtual assistant")
    customer.fill("#content", "How long does shipping take?")
    customer.click("#send")
    expect(assistant_replies).to_have_count(bot_count + 1, timeout=TIMEOUT_MS * 2)
    expect(assistant_replies.last).to_have_attribute("data-status", "complete", timeout=TIMEOUT_MS * 2)
    assert re.search(r"\w", assistant_replies.last.inner_text())
