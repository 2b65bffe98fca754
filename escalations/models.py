"""Escalations: conversations handed to a human, and the staff's work on them."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Escalation(models.Model):
    class Reason(models.TextChoices):
        USER_REQUEST = "user_request", "User asked for a human"
        NEGATIVE_SENTIMENT = "negative_sentiment", "Negative sentiment"
        LOW_CONFIDENCE = "low_confidence", "Nothing relevant found"
        REPEATED_QUESTION = "repeated_question", "Repeated question"
        RISKY_TOPIC = "risky_topic", "Risky topic"
        TOOL_FAILURE = "tool_failure", "Tool failure"
        APPROVAL_REQUIRED = "approval_required", "Tool call needs approval"
        MANUAL = "manual", "Raised by staff"

    class Priority(models.IntegerChoices):
        LOW = 1, "Low"
        NORMAL = 2, "Normal"
        HIGH = 3, "High"
        URGENT = 4, "Urgent"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ASSIGNED = "assigned", "Assigned"
        RESOLVED = "resolved", "Resolved"
        RETURNED = "returned", "Returned to bot"

    session = models.ForeignKey("conversations.ChatSession", on_delete=models.CASCADE, related_name="escalations")
    reason = models.CharField(max_length=32, choices=Reason.choices, db_index=True)
    detail = models.TextField(blank=True)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN, db_index=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="escalations"
    )
    sla_due_at = models.DateTimeField(db_index=True)
    summary = models.TextField(blank=True)
    internal_notes = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    first_response_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # Set once when the SLA passes without a human reply, so a breach is counted once.
    breached_at = models.DateTimeField(null=True, blank=True)
    # Set when the outgoing webhook was delivered, so a retried task never sends twice.
    webhook_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["sla_due_at"]
        permissions = [
            ("reply_escalation", "Can reply to users in an escalated chat"),
            ("reassign_escalation", "Can take over an escalation assigned to someone else"),
        ]
        constraints = [
            # At most one live escalation per chat: a second "talk to a human" joins the first.
            models.UniqueConstraint(
                fields=["session"],
                condition=models.Q(status__in=["open", "assigned"]),
                name="one_open_escalation_per_session",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_reason_display()} ({self.get_status_display()})"

    def is_open(self) -> bool:
        return self.status in (self.Status.OPEN, self.Status.ASSIGNED)

    def is_overdue(self) -> bool:
        return self.is_open() and self.sla_due_at <= timezone.now()


class InternalNote(models.Model):
    """A note between staff on an escalation; never shown to the end user."""

    escalation = models.ForeignKey(Escalation, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.body[:60]


class EscalationEvent(models.Model):
    """Audit trail of staff actions: who did what, when."""

    escalation = models.ForeignKey(Escalation, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=32)
    detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]


class CannedReply(models.Model):
    title = models.CharField(max_length=120, unique=True)
    body = models.TextField()

    class Meta:
        ordering = ["title"]
        verbose_name_plural = "canned replies"

    def __str__(self) -> str:
        return self.title
