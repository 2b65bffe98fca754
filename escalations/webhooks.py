"""The optional outgoing webhook: each new escalation POSTed as JSON, signed with HMAC-SHA256.

Receivers verify `X-Supportdesk-Signature: sha256=<hex>` over the raw body with the
shared secret, and may deduplicate on `X-Supportdesk-Delivery` (the escalation id).
"""
from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from escalations import metrics
from escalations.models import Escalation

SIGNATURE_HEADER = "X-Supportdesk-Signature"


class WebhookFailed(Exception):
    """The receiver was unreachable or answered with an error; the task retries."""


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, signature: str) -> bool:
    return hmac.compare_digest(sign(body, secret), signature)


def payload(escalation: Escalation) -> dict[str, Any]:
    return {
        "event": "escalation.opened",
        "id": escalation.pk,
        "session": str(escalation.session.public_id),
        "reason": escalation.reason,
        "detail": escalation.detail,
        "priority": escalation.get_priority_display().lower(),
        "status": escalation.status,
        "summary": escalation.summary,
        "created_at": escalation.created_at.isoformat(),
        "sla_due_at": escalation.sla_due_at.isoformat(),
        "admin_path": reverse("admin:escalations_escalation_change", args=[escalation.pk]),
    }


def escalation_webhook_send(*, escalation_id: int) -> bool:
    """POST the escalation once; True when sent now, False when off, gone or already sent."""
    url, secret = settings.ESCALATION_WEBHOOK_URL, settings.ESCALATION_WEBHOOK_SECRET
    escalation = Escalation.objects.select_related("session").filter(pk=escalation_id).first()
    if not url or escalation is None or escalation.webhook_sent_at is not None:
        return False
    body = json.dumps(payload(escalation), separators=(",", ":"), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret),
               "X-Supportdesk-Event": "escalation.opened", "X-Supportdesk-Delivery": str(escalation.pk)}
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=settings.ESCALATION_WEBHOOK_TIMEOUT_S)
    except httpx.HTTPError as exc:
        metrics.WEBHOOKS.labels("error").inc()
        raise WebhookFailed(f"{type(exc).__name__}: {exc}") from exc
    if not response.is_success:
        metrics.WEBHOOKS.labels("error").inc()
        raise WebhookFailed(f"HTTP {response.status_code}")
    Escalation.objects.filter(pk=escalation.pk, webhook_sent_at=None).update(webhook_sent_at=timezone.now())
    metrics.WEBHOOKS.labels("sent").inc()
    return True
