"""Reads on escalations: the queue, positions in it, transcripts, the support team."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db.models import Model, OuterRef, Q, QuerySet, Subquery

from escalations.hours import BusinessHours
from escalations.models import Escalation

LIVE = (Escalation.Status.OPEN, Escalation.Status.ASSIGNED)


def message_model() -> type[Model]:
    """conversations.Message, reached through the relation (escalations never imports conversations)."""
    session_model = Escalation._meta.get_field("session").related_model
    return session_model._meta.get_field("messages").related_model


def business_hours() -> BusinessHours:
    return BusinessHours.of(settings.ESCALATION_BUSINESS_HOURS, settings.ESCALATION_TIME_ZONE,
                            settings.ESCALATION_HOLIDAYS)


def escalation_queue() -> QuerySet[Escalation]:
    """Escalations in SLA order with the last message of their chat (one query for the list)."""
    last = message_model().objects.filter(session=OuterRef("session")).order_by("-created_at", "-id")
    return (Escalation.objects.select_related("session", "assignee")
            .annotate(last_message=Subquery(last.values("content")[:1]),
                      last_message_role=Subquery(last.values("role")[:1]))
            .order_by("sla_due_at", "id"))


def queue_ahead(*, escalation: Escalation) -> int:
    """Unassigned escalations a human will pick before this one (the queue runs in SLA order)."""
    earlier = Q(sla_due_at__lt=escalation.sla_due_at) | Q(sla_due_at=escalation.sla_due_at, pk__lt=escalation.pk)
    return Escalation.objects.filter(earlier, status=Escalation.Status.OPEN).exclude(pk=escalation.pk).count()


def queue_counts() -> dict[str, int]:
    return {status: Escalation.objects.filter(status=status).count() for status in LIVE}


def transcript(*, escalation: Escalation) -> list[Any]:
    """The chat's messages, oldest first, with each bot reply's agent runs and tool calls."""
    return list(escalation.session.messages.select_related("author")
                .prefetch_related("produced_by__tool_calls").order_by("created_at", "id"))


def support_agents() -> QuerySet:
    """Active staff who may work the queue (change_escalation, directly, by group or as superuser)."""
    perm = Permission.objects.get(content_type__app_label="escalations", codename="change_escalation")
    return (get_user_model().objects.filter(is_active=True, is_staff=True)
            .filter(Q(is_superuser=True) | Q(user_permissions=perm) | Q(groups__permissions=perm))
            .distinct().order_by("username"))


def display_name(user: Any) -> str:
    return (user.get_full_name() or user.get_username()) if user is not None else "Support"


def open_escalation_for(*, session_id: int) -> Escalation | None:
    """The chat's live escalation, if any (there is at most one)."""
    return Escalation.objects.select_related("session").filter(session_id=session_id, status__in=LIVE).first()
