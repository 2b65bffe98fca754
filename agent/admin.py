from django.contrib import admin

from agent.models import AgentRun, ToolCall


class ToolCallInline(admin.TabularInline):
    model = ToolCall
    extra = 0
    fields = ("tool", "status", "arguments", "result_summary", "duration_ms", "error")
    readonly_fields = fields
    can_delete = False


@admin.register(AgentRun)
class AgentRunAdmin(admin.ModelAdmin):
    list_display = ("started_at", "session", "mode", "model", "status", "confidence", "escalated")
    list_filter = ("mode", "status", "escalated")
    search_fields = ("request_id",)
    raw_id_fields = ("session", "user_message", "reply")
    inlines = [ToolCallInline]


@admin.register(ToolCall)
class ToolCallAdmin(admin.ModelAdmin):
    list_display = ("created_at", "tool", "status", "duration_ms", "session_public_id", "request_id")
    list_filter = ("tool", "status", "approval_required")
    search_fields = ("request_id", "session_public_id")
    raw_id_fields = ("run",)
