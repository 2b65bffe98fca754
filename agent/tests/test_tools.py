"""Each tool on its own, and the registry that switches them on and off."""
from __future__ import annotations

import time

import pytest

from agent.schema import AgentContext
from agent.tools.base import ToolError
from agent.tools.memory import extract_facts
from agent.tools.order_status import OrderStatusTool
from agent.tools.registry import enabled_tools, get_tool

pytestmark = pytest.mark.django_db


def context(chat, text: str = "hello") -> AgentContext:
    return chat.context(text)


def test_order_status_returns_the_order_from_the_api(chat, order_service):
    result = OrderStatusTool().run(context(chat), order_id="#NW-100234")
    assert result.ok and result.data["status"] == "Shipped"
    assert result.summary == "Order NW-100234: Shipped; carrier UPS, tracking 1Z999; estimated delivery 2026-11-28"
    assert order_service.calls == [("/orders/NW-100234", "Bearer order-token")]


def test_order_status_retries_transient_failures_with_backoff(chat, order_service):
    order_service.responses = [(503, {"error": "busy"}), (502, b"bad gateway")]
    started = time.monotonic()
    result = OrderStatusTool().run(context(chat), order_id="NW-100234")
    assert result.ok and len(order_service.calls) == 3
    assert time.monotonic() - started >= 0.2 + 0.4 - 0.05


def test_order_status_explains_an_unknown_order(chat, order_service):
    order_service.responses = [(404, {"detail": "not found"})]
    with pytest.raises(ToolError, match="no order NW-999 was found") as caught:
        OrderStatusTool().run(context(chat), order_id="NW-999")
    assert caught.value.recoverable and len(order_service.calls) == 1


def test_order_status_gives_up_clearly_when_the_service_stays_down(chat, order_service):
    order_service.responses = [(500, {})] * 3
    with pytest.raises(ToolError, match=r"order service unavailable \(HTTP 500\)") as caught:
        OrderStatusTool().run(context(chat), order_id="NW-1")
    assert not caught.value.recoverable


def test_order_status_times_out_on_a_silent_service(chat, settings):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts connections but never answers
    settings.ORDER_API_URL = f"http://127.0.0.1:{listener.getsockname()[1]}"
    settings.ORDER_API_TIMEOUT_S = 0.2
    started = time.monotonic()
    with pytest.raises(ToolError, match="order service unreachable"):
        OrderStatusTool().run(context(chat), order_id="NW-1")
    assert time.monotonic() - started < 3
    listener.close()


@pytest.mark.parametrize("bad", ["", "x", "NW 1; DROP TABLE", "../../etc/passwd"])
def test_order_status_refuses_what_is_not_an_order_number(chat, order_service, bad):
    with pytest.raises(ToolError, match="is not an order number"):
        OrderStatusTool().run(context(chat), order_id=bad)
    assert order_service.calls == []


def test_order_status_without_configuration_is_an_unrecoverable_error(chat, settings):
    settings.ORDER_API_URL = None
    with pytest.raises(ToolError, match="not configured") as caught:
        OrderStatusTool().run(context(chat), order_id="NW-1")
    assert not caught.value.recoverable


def test_a_tool_switched_off_in_settings_is_not_available(settings):
    settings.AGENT_TOOLS_ENABLED = {**settings.AGENT_TOOLS_ENABLED, "order_status": False}
    assert get_tool("order_status") is None
    assert "order_status" not in enabled_tools() and "memory" in enabled_tools()


def test_a_switched_off_pipeline_tool_is_skipped(chat, settings):
    settings.AGENT_TOOLS_ENABLED = {**settings.AGENT_TOOLS_ENABLED, "attachments": False}
    _, response = chat.ask("How do I reset my password?")
    assert "attachments" not in [c.tool for c in response.tool_calls]


def test_a_registry_entry_must_name_its_own_tool(settings):
    settings.AGENT_TOOLS = {"memory": "agent.tools.attachments.AttachmentsTool"}
    settings.AGENT_TOOLS_ENABLED = {"memory": True}
    with pytest.raises(ValueError, match="points at a tool named 'attachments'"):
        enabled_tools()


@pytest.mark.parametrize(
    ("text", "facts"),
    [
        ("Hi, my name is Jane Doe", {"name": "Jane Doe"}),
        ("reach me at jane@example.com", {"email": "jane@example.com"}),
        ("my order NW-100234 is late", {"order_number": "NW-100234"}),
        ("order #1002345 never came", {"order_number": "1002345"}),
        ("I paid 1299 dollars on 2024-05-01", {}),
    ],
)
def test_memory_extracts_the_facts_a_user_states(text, facts):
    assert extract_facts(text) == facts


def test_the_attachments_tool_reads_this_messages_files(chat):
    from conversations.models import Attachment

    ctx = chat.context("see the attached invoice")
    Attachment.objects.create(session=chat.session, message_id=ctx.message_id, original_name="invoice.pdf",
                              content_type="application/pdf", size=10, text="Invoice total 42 EUR", status="ready")
    result = get_tool("attachments").run(ctx)
    assert result.ok and result.data == ["invoice.pdf"]
    assert ctx.attachments[0].text == "Invoice total 42 EUR"


PRIVATE_ORDER = {"id": "NW-100234", "status": "Shipped", "carrier": "UPS", "tracking_number": "1Z999",
                 "customer_email": "Jane.Doe@example.com", "customer_name": "Jane Doe",
                 "shipping_address": "12 Elm Street, Springfield"}


@pytest.mark.parametrize("how", ["session", "stated now", "stated earlier"])
def test_order_status_shares_an_order_with_the_customer_it_belongs_to_without_their_address(chat, order_service,
                                                                                           how):
    order_service.default = PRIVATE_ORDER
    ctx = context(chat, "Where is order NW-100234? I'm jane.doe@example.com" if how == "stated now" else "Hi")
    if how == "session":
        ctx.customer_email = "jane.doe@EXAMPLE.com"
    if how == "stated earlier":
        from agent.schema import MemoryItem

        ctx.memories = [MemoryItem("fact", "email", "jane.doe@example.com")]
    result = OrderStatusTool().run(ctx, order_id="NW-100234")
    assert result.ok and result.data == {"id": "NW-100234", "status": "Shipped", "carrier": "UPS",
                                         "tracking_number": "1Z999"}


def test_order_status_refuses_an_order_of_another_customer_and_says_nothing_of_it(chat, order_service):
    order_service.default = PRIVATE_ORDER
    ctx = context(chat, "Where is order NW-100234? My email is mallory@example.com")
    with pytest.raises(ToolError, match="does not belong") as refused:
        OrderStatusTool().run(ctx, order_id="NW-100234")
    assert refused.value.recoverable, "a refusal is a normal reply"
    assert not any(word in str(refused.value) for word in ("Shipped", "Jane", "Elm", "jane.doe"))


def test_order_status_asks_for_the_email_when_it_cannot_tell_whose_order_it_is(chat, order_service):
    order_service.default = PRIVATE_ORDER
    with pytest.raises(ToolError, match="ask the customer for the email address") as refused:
        OrderStatusTool().run(context(chat, "Where is order NW-100234?"), order_id="NW-100234")
    assert "Shipped" not in str(refused.value)
