import json

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from agent.models import AgentRun
from conversations.models import Attachment, ChatSession, Memory, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("created_at", "role", "author_name", "content", "status", "feedback")
    readonly_fields = fields
    can_delete = False


@admin.register(ChatSession)
class ChatSessionAdmin(admin.ModelAdmin):
    list_display = ("public_id", "state", "end_user_email", "last_activity_at", "expires_at")
    list_filter = ("state",)
    search_fields = ("public_id", "end_user_email", "end_user_id")
    readonly_fields = ("public_id", "token_hash", "created_at")
    inlines = [MessageInline]


class FeedbackFilter(admin.SimpleListFilter):
    """Replies customers rated: all of them, or only the 👎 ones worth a look."""

    title = "customer feedback"
    parameter_name = "rated"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("any", "Any feedback"), ("down", "👎 only"), ("up", "👍 only")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "any":
            return queryset.filter(role=Message.Role.ASSISTANT).exclude(feedback="")
        if self.value() in ("up", "down"):
            return queryset.filter(role=Message.Role.ASSISTANT, feedback=self.value())
        return queryset


class _AgentRunInline(admin.StackedInline):
    """The audit trail of the agent's run, read-only, with its tool calls (arguments PII-redacted)."""

    model = AgentRun
    extra = max_num = 0
    can_delete = False
    fields = ("status", "mode", "model", "confidence", "escalated", "escalation_reason", "tool_calls",
              "timings_ms", "prompt_tokens", "completion_tokens", "cost_usd", "flags", "error", "request_id",
              "started_at", "finished_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False  # runs are written by the agent only

    @admin.display(description="Tool calls")
    def tool_calls(self, run: AgentRun) -> str:
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td></tr>",
                                ((c.tool, c.get_status_display(), json.dumps(c.arguments), c.result_summary,
                                  c.duration_ms, c.error) for c in run.tool_calls.all()))
        header = "<tr><th>Tool</th><th>Status</th><th>Arguments</th><th>Result</th><th>Took</th><th>Error</th></tr>"
        return format_html("<table>{}{}</table>", mark_safe(header), rows) if rows else "none"


class RunForQuestionInline(_AgentRunInline):
    fk_name = "user_message"
    verbose_name, verbose_name_plural = "agent run answering this message", "agent runs answering this message"


class RunForReplyInline(_AgentRunInline):
    fk_name = "reply"
    verbose_name, verbose_name_plural = "agent run that wrote this reply", "agent runs that wrote this reply"


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("session", "role", "question", "short_content", "status", "feedback", "feedback_comment",
                    "created_at")
    list_filter = (FeedbackFilter, "role", "status", "feedback", "grounded")
    list_select_related = ("reply_to", "session")
    search_fields = ("content", "feedback_comment")
    raw_id_fields = ("session", "reply_to", "author")
    inlines = [RunForQuestionInline, RunForReplyInline]

    @admin.display(description="Content")
    def short_content(self, obj: Message) -> str:
        return obj.content[:200]

    @admin.display(description="Question")
    def question(self, obj: Message) -> str:
        return obj.reply_to.content[:200] if obj.reply_to else ""


@admin.register(Memory)
class MemoryAdmin(admin.ModelAdmin):
    list_display = ("session", "kind", "key", "content", "expires_at")
    list_filter = ("kind",)
    raw_id_fields = ("session",)


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    list_display = ("original_name", "session", "content_type", "size", "status", "created_at")
    list_filter = ("status",)
    raw_id_fields = ("session", "message")
