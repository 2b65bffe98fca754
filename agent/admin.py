from django.contrib import admin
from django.db import transaction
from django.http import HttpRequest

from agent.models import AgentRun, AssistantProfile, ToolCall
from agent.selectors import forget_assistant_persona


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


@admin.register(AssistantProfile)
class AssistantProfileAdmin(admin.ModelAdmin):
    list_display = ("__str__", "stay_on_topic", "updated_at")
    fields = ("persona", "topics", "stay_on_topic")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not AssistantProfile.objects.exists()

    def save_model(self, request: HttpRequest, obj: AssistantProfile, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        super().save_model(request, obj, form, change)
        transaction.on_commit(forget_assistant_persona)  # other processes follow within PERSONA_CACHE_S

    def delete_model(self, request: HttpRequest, obj: AssistantProfile) -> None:
        super().delete_model(request, obj)
        transaction.on_commit(forget_assistant_persona)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:  # type: ignore[no-untyped-def]
        super().delete_queryset(request, queryset)
        transaction.on_commit(forget_assistant_persona)
