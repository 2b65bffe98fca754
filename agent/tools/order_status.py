"""Worked example of a domain tool: looks an order up in the shop's order API."""
from __future__ import annotations

import re
import time
from typing import Any

import httpx
from django.conf import settings

from agent.tools.base import BaseTool, ToolError
from agent.schema import AgentContext, ToolResult

ORDER_ID = re.compile(r"^[A-Za-z0-9-]{3,32}$")
RETRIES = 3
BACKOFF_S = 0.2
RETRYABLE_STATUS = {429, 500, 502, 503, 504}
# What the model (and the audit row) sees of an order: its progress, never who placed it or
# where it goes. Integrations with other field names add them here.
SHOWN_FIELDS = ("id", "status", "carrier", "tracking_number", "tracking_url", "estimated_delivery", "shipped_at",
                "delivered_at", "items", "total", "currency")
OWNER_FIELDS = ("customer_email", "email")


class OrderStatusTool(BaseTool):
    name = "order_status"
    description = "Looks up the status, carrier and tracking of one of the customer's orders by order number."
    parameters = {
        "type": "object",
        "properties": {"order_id": {"type": "string", "description": "The order number, e.g. NW-100234"}},
        "required": ["order_id"],
    }
    offered_to_llm = True

    def run(self, ctx: AgentContext, **args: Any) -> ToolResult:
        order_id = str(args.get("order_id", "")).strip().lstrip("#")
        if not ORDER_ID.match(order_id):
            raise ToolError(f"“{order_id[:40]}” is not an order number (expected e.g. NW-100234)")
        if not settings.ORDER_API_URL:
            raise ToolError("order lookups are not configured (ORDER_API_URL)", recoverable=False)
        order = fetch_order(order_id)
        check_owner(ctx, order, order_id)
        shown = {key: order[key] for key in SHOWN_FIELDS if key in order}
        return ToolResult(ok=True, data=shown, summary=describe(shown))


def check_owner(ctx: AgentContext, order: dict, order_id: str) -> None:
    """Refuse another customer's order: its owner's email must be one this customer is known by.

    An order that names no owner cannot be checked; only SHOWN_FIELDS of it are shared.
    The errors are recoverable: the model tells the customer, as a normal reply.
    """
    owner = next((str(order[key]).strip().lower() for key in OWNER_FIELDS if order.get(key)), "")
    if not owner:
        return
    known = customer_emails(ctx)
    if not known:
        raise ToolError(f"order {order_id} is private: ask the customer for the email address it was placed with")
    if owner not in known:
        raise ToolError(f"order {order_id} does not belong to the email address this customer gave; "
                        "share nothing about it")


def customer_emails(ctx: AgentContext) -> set[str]:
    """The emails that identify this customer: from the integration, or stated by them in this chat."""
    from agent.tools.memory import extract_facts

    stated = [m.content for m in ctx.memories if m.kind == "fact" and m.key == "email"]
    stated.append(extract_facts(ctx.text).get("email", ""))
    return {email.strip().lower() for email in (ctx.customer_email, *stated) if email.strip()}


def fetch_order(order_id: str) -> dict:
    """GET {ORDER_API_URL}/orders/{id} with a timeout, retrying transient failures with backoff."""
    url = f"{settings.ORDER_API_URL.rstrip('/')}/orders/{order_id}"
    headers = {"Authorization": f"Bearer {settings.ORDER_API_TOKEN}"} if settings.ORDER_API_TOKEN else {}
    last_error = ""
    for attempt in range(RETRIES):
        if attempt:
            time.sleep(BACKOFF_S * 2 ** (attempt - 1))
        try:
            response = httpx.get(url, headers=headers, timeout=settings.ORDER_API_TIMEOUT_S)
        except httpx.HTTPError as error:
            last_error = f"order service unreachable ({type(error).__name__})"
            continue
        if response.status_code in RETRYABLE_STATUS:
            last_error = f"order service unavailable (HTTP {response.status_code})"
            continue
        return _parse(order_id, response)
    raise ToolError(last_error, recoverable=False)


def _parse(order_id: str, response: httpx.Response) -> dict:
    if response.status_code == 404:
        raise ToolError(f"no order {order_id} was found")
    if response.status_code in (401, 403):
        raise ToolError("the order service refused our credentials", recoverable=False)
    if response.status_code != 200:
        raise ToolError(f"order service error (HTTP {response.status_code})", recoverable=False)
    try:
        data = response.json()
    except ValueError:
        raise ToolError("the order service sent an unreadable answer", recoverable=False) from None
    if not isinstance(data, dict):
        raise ToolError("the order service sent an unreadable answer", recoverable=False)
    return data


def describe(order: dict) -> str:
    parts = [f"Order {order.get('id', '?')}: {order.get('status', 'unknown status')}"]
    if order.get("carrier") or order.get("tracking_number"):
        parts.append(f"carrier {order.get('carrier', '?')}, tracking {order.get('tracking_number', '?')}")
    if order.get("estimated_delivery"):
        parts.append(f"estimated delivery {order['estimated_delivery']}")
    return "; ".join(parts)
