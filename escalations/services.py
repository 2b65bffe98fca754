"""Writes on escalations."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from escalations.models import Escalation, EscalationEvent

PRIORITY_BY_NAME = {"low": Escalation.Priority.LOW, "normal": Escalation.Priority.NORMAL,
                    "high": Escalation.Priority.HIGH, "urgent": Escalation.Priority.URGENT}


def sla_due(priority: int) -> timezone.datetime:
    minutes = settings.ESCALATION_SLA_MINUTES[Escalation.Priority(priority).name.lower()]
    return timezone.now() + timedelta(minutes=minutes)


def escalation_open(*, session_id: int, reason: str, detail: str = "", priority: str = "") -> Escalation:
    """Open an escalation for a chat, or return the one already open (at most one per chat)."""
    existing = Escalation.objects.filter(session_id=session_id, status__in=["open", "assigned"]).first()
    if existing:
        return existing
    level = PRIORITY_BY_NAME.get(priority or "normal", Escalation.Priority.NORMAL)
    try:
        with transaction.atomic():
            escalation = Escalation.objects.create(session_id=session_id, reason=reason, detail=detail[:2000],
                                                   priority=level, sla_due_at=sla_due(level))
            EscalationEvent.objects.create(escalation=escalation, action="opened", detail=f"{reason}: {detail}"[:500])
    except IntegrityError:  # opened concurrently by another process
        return Escalation.objects.get(session_id=session_id, status__in=["open", "assigned"])
    return escalation
