"""Chat sessions, their messages, memories and attachments."""
from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class ChatSession(models.Model):
    class State(models.TextChoices):
        BOT = "bot", "Bot"
        WAITING = "waiting", "Waiting for a human"
        HUMAN = "human", "Human"
        CLOSED = "closed", "Closed"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Only the SHA-256 of the secret token is stored; the token lives in the client's cookie.
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField(db_index=True)
    end_user_id = models.CharField(max_length=200, blank=True, help_text="Identity supplied by an integration")
    end_user_email = models.EmailField(blank=True)
    end_user_name = models.CharField(max_length=200, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.BOT, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_activity_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-last_activity_at"]

    def __str__(self) -> str:
        return f"Chat {str(self.public_id)[:8]}"

    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    def bot_may_reply(self) -> bool:
        return self.state == self.State.BOT


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"
        HUMAN = "human", "Human agent"
        SYSTEM = "system", "System"

    class Status(models.TextChoices):
        COMPLETE = "complete", "Complete"
        STREAMING = "streaming", "Streaming"
        INTERRUPTED = "interrupted", "Interrupted"
        FAILED = "failed", "Failed"

    class Feedback(models.TextChoices):
        NONE = "", "None"
        UP = "up", "👍"
        DOWN = "down", "👎"

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    client_message_id = models.CharField(max_length=64, blank=True)
    reply_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    author_name = models.CharField(max_length=150, blank=True)
    # [{"n": 1, "chunk_id": .., "document_id": .., "title": .., "heading": ..}]
    sources = models.JSONField(default=list, blank=True)
    grounded = models.BooleanField(default=False, help_text="Answered from the help centre without an LLM")
    confidence = models.FloatField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    model = models.CharField(max_length=200, blank=True)
    feedback = models.CharField(max_length=8, choices=Feedback.choices, default=Feedback.NONE, blank=True)
    feedback_comment = models.TextField(blank=True)
    feedback_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "client_message_id"],
                condition=~Q(client_message_id=""),
                name="message_client_id_unique_per_session",
            )
        ]
        indexes = [models.Index(fields=["session", "id"])]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"


class Memory(models.Model):
    class Kind(models.TextChoices):
        SUMMARY = "summary", "Summary"
        FACT = "fact", "Fact"

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="memories")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    key = models.CharField(max_length=64, blank=True, help_text="For facts: name, email, order_number…")
    content = models.TextField()
    # Summary only: the last message folded into it, so the next update folds just the newer turns.
    folded_until = models.BigIntegerField(null=True, blank=True, help_text="Summary: id of the last message folded in")
    expires_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session", "kind", "key"], name="memory_unique_key_per_session"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.key} {self.content[:40]}"


class Attachment(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="attachments")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="attachments")
    file = models.FileField(upload_to="attachments/%Y/%m/")
    original_name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    text = models.TextField(blank=True, help_text="Converted text given to the agent")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.original_name
