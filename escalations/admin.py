from django.contrib import admin

from escalations.models import CannedReply, Escalation, EscalationEvent


class EventInline(admin.TabularInline):
    model = EscalationEvent
    extra = 0
    readonly_fields = ("created_at", "actor", "action", "detail")
    can_delete = False


@admin.register(Escalation)
class EscalationAdmin(admin.ModelAdmin):
    list_display = ("session", "reason", "priority", "status", "assignee", "sla_due_at", "created_at")
    list_filter = ("status", "reason", "priority", "assignee")
    raw_id_fields = ("session",)
    inlines = [EventInline]


@admin.register(CannedReply)
class CannedReplyAdmin(admin.ModelAdmin):
    list_display = ("title",)
    search_fields = ("title", "body")
