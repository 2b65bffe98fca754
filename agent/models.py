"""Audit rows (one AgentRun per reply, one ToolCall per tool invocation) and the assistant's profile."""
from __future__ import annotations

from django.db import models
from django.utils import timezone


class AgentRun(models.Model):
    class Mode(models.TextChoices):
        LLM = "llm", "LLM"
        GROUNDED = "grounded", "Grounded (no LLM)"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        COMPLETE = "complete", "Complete"
        ESCALATED = "escalated", "Escalated"
        INTERRUPTED = "interrupted", "Interrupted"
        FAILED = "failed", "Failed"

    session = models.ForeignKey("conversations.ChatSession", on_delete=models.CASCADE, related_name="agent_runs")
    user_message = models.ForeignKey(
        "conversations.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="agent_runs"
    )
    reply = models.ForeignKey(
        "conversations.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="produced_by"
    )
    request_id = models.CharField(max_length=128, blank=True, db_index=True)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.GROUNDED)
    model = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    confidence = models.FloatField(null=True, blank=True)
    escalated = models.BooleanField(default=False)
    escalation_reason = models.CharField(max_length=64, blank=True)
    timings_ms = models.JSONField(default=dict, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    flags = models.JSONField(default=dict, blank=True, help_text="Injection, unsupported claims, leakage…")
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"Run {self.pk} ({self.mode}, {self.status})"


class ToolCall(models.Model):
    class Status(models.TextChoices):
        OK = "ok", "OK"
        ERROR = "error", "Error"
        PENDING_APPROVAL = "pending_approval", "Waiting for approval"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    run = models.ForeignKey(AgentRun, on_delete=models.CASCADE, related_name="tool_calls")
    tool = models.CharField(max_length=100, db_index=True)
    arguments = models.JSONField(default=dict, blank=True, help_text="PII redacted")
    result_summary = models.TextField(blank=True)
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.OK)
    approval_required = models.BooleanField(default=False)
    duration_ms = models.FloatField(default=0)
    error = models.TextField(blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    session_public_id = models.CharField(max_length=36, blank=True, db_index=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.tool} ({self.status})"


class AssistantProfile(models.Model):
    """How the assistant presents itself, set by staff in admin; empty fields keep the settings'.

    One row at most (id 1): the agent reads it through agent.selectors.assistant_persona().
    """

    SINGLETON = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON, editable=False)
    persona = models.TextField(
        blank=True, max_length=4000,
        help_text="Who the assistant is and how it speaks, at the top of its instructions. Empty: SUPPORT_PERSONA.")
    topics = models.TextField(
        blank=True, max_length=1000,
        help_text="What it helps with, e.g. 'orders, deliveries and returns at Northwind Goods'. Empty: SUPPORT_TOPICS.")
    stay_on_topic = models.BooleanField(default=True, help_text="Politely decline requests outside these topics.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="assistant_profile_singleton")]

    def __str__(self) -> str:
        return "Assistant profile"
