"""The agents' console: the live escalation queue and each escalation's page (transcript, reply, notes)."""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from escalations import selectors
from escalations.models import CannedReply, Escalation, EscalationEvent, InternalNote
from escalations.services import (
    EscalationError,
    escalation_assign,
    escalation_note_add,
    escalation_reply,
    escalation_resolve,
    escalation_return,
    escalation_set_priority,
)

DETAIL = "admin/escalations/escalation/detail.html"


def priority_badge(escalation: Escalation) -> str:
    return format_html('<span class="prio prio-{}">{}</span>', escalation.priority, escalation.get_priority_display())


def sla_badge(escalation: Escalation) -> str:
    """SLA due time, amber when near, red when past; grey once a human answered or it closed."""
    due = escalation.sla_due_at
    if escalation.first_response_at or not escalation.is_open():
        return format_html('<span class="sla sla-done">{}</span>', timezone.localtime(due).strftime("%H:%M"))
    now = timezone.now()
    if due <= now:
        return format_html('<span class="sla sla-past" title="{}">{} overdue</span>', due.isoformat(), timesince(due, now))
    near = due - now <= timedelta(minutes=settings.ESCALATION_SLA_WARNING_MIN)
    css = "sla-near" if near else "sla-ok"
    return format_html('<span class="sla {}" title="{}">in {}</span>', css, due.isoformat(), timesince(now, due))


class QueueStatusFilter(admin.SimpleListFilter):
    """Status, defaulting to the live queue (open or assigned)."""

    title, parameter_name = "status", "queue"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("live", "Open or assigned"), *Escalation.Status.choices, ("all", "All")]

    def value(self) -> str:
        return super().value() or "live"

    def choices(self, changelist):  # type: ignore[no-untyped-def]
        for lookup, title in self.lookup_choices:
            yield {"selected": self.value() == lookup, "display": title,
                   "query_string": changelist.get_query_string({self.parameter_name: lookup})}

    def queryset(self, request: HttpRequest, queryset: QuerySet[Escalation]) -> QuerySet[Escalation]:
        if self.value() == "all":
            return queryset
        if self.value() == "live":
            return queryset.filter(status__in=selectors.LIVE)
        return queryset.filter(status=self.value())


@admin.register(Escalation)
class EscalationAdmin(admin.ModelAdmin):
    list_display = ("conversation", "priority_col", "reason", "status", "waiting", "sla", "assignee", "last_message")
    list_filter = (QueueStatusFilter, "reason", "priority", "assignee")
    ordering = ("sla_due_at", "id")
    change_list_template = "admin/escalations/escalation/change_list.html"
    actions = ("assign_to_me", "assign_to", "resolve", "return_to_bot",
               "priority_urgent", "priority_high", "priority_normal", "priority_low")
    list_per_page = 50

    def get_queryset(self, request: HttpRequest) -> QuerySet[Escalation]:
        return selectors.escalation_queue()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # opened by the agent's rules, never by hand

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # the audit trail stays
        return actions

    # ------------------------------------------------------------------ columns

    @admin.display(description="Conversation", ordering="id")
    def conversation(self, obj: Escalation) -> str:
        return f"#{obj.pk} · {obj.session}"

    @admin.display(description="Priority", ordering="-priority")
    def priority_col(self, obj: Escalation) -> str:
        return priority_badge(obj)

    @admin.display(description="Waiting", ordering="created_at")
    def waiting(self, obj: Escalation) -> str:
        end = obj.first_response_at or obj.resolved_at or timezone.now()
        return timesince(obj.created_at, end)

    @admin.display(description="SLA due", ordering="sla_due_at")
    def sla(self, obj: Escalation) -> str:
        return sla_badge(obj)

    @admin.display(description="Last message")
    def last_message(self, obj: Escalation) -> str:
        text = getattr(obj, "last_message", None) or ""
        return format_html("<small>{}:</small> {}", getattr(obj, "last_message_role", ""), text[:80]) if text else "–"

    # ------------------------------------------------------------------ the escalation page

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/transcript/", view(self.transcript_view), name="escalations_escalation_transcript"),
            path("<int:pk>/reply/", view(self.reply_view), name="escalations_escalation_reply"),
            path("<int:pk>/note/", view(self.note_view), name="escalations_escalation_note"),
            path("<int:pk>/do/<str:action>/", view(self.act_view), name="escalations_escalation_act"),
            *super().get_urls(),
        ]

    def _viewable(self, request: HttpRequest, pk: int | str) -> Escalation:
        escalation = get_object_or_404(Escalation.objects.select_related("session", "assignee"), pk=pk)
        if not self.has_view_or_change_permission(request, escalation):
            raise PermissionDenied
        return escalation

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None) -> HttpResponse:
        escalation = self._viewable(request, object_id)
        user = request.user
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "escalation": escalation,
                   "title": f"Escalation #{escalation.pk}", "messages": selectors.transcript(escalation=escalation),
                   "priority_badge": priority_badge(escalation), "sla_badge": sla_badge(escalation),
                   "assignee_name": selectors.display_name(escalation.assignee), "my_name": selectors.display_name(user),
                   "can_change": user.has_perm("escalations.change_escalation"),
                   "can_reply": user.has_perm("escalations.reply_escalation"),
                   "canned": CannedReply.objects.all(), "agents": selectors.support_agents(),
                   "notes": InternalNote.objects.filter(escalation=escalation).select_related("author"),
                   "events": escalation.events.select_related("actor"), "priorities": Escalation.Priority.choices}
        return TemplateResponse(request, DETAIL, context)

    def transcript_view(self, request: HttpRequest, pk: int, error: str = "") -> HttpResponse:
        escalation = self._viewable(request, pk)
        context = {"escalation": escalation, "messages": selectors.transcript(escalation=escalation), "error": error}
        return TemplateResponse(request, DETAIL + "#transcript", context)

    def reply_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        escalation = self._viewable(request, pk)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        error = self._attempt(request, lambda: escalation_reply(
            escalation=escalation, author=request.user, text=request.POST.get("text", "")))
        if request.htmx:
            return self.transcript_view(request, pk, error=error)
        return redirect("admin:escalations_escalation_change", pk)

    def note_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        escalation = self._viewable(request, pk)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        self._attempt(request, lambda: escalation_note_add(
            escalation=escalation, author=request.user, body=request.POST.get("body", "")))
        return redirect("admin:escalations_escalation_change", pk)

    def act_view(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        escalation = self._viewable(request, pk)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        self._attempt(request, self._operation(request, escalation, action, request.POST), success=action)
        if action in ("resolve", "return"):
            return redirect("admin:escalations_escalation_changelist")
        return redirect("admin:escalations_escalation_change", pk)

    def _operation(self, request: HttpRequest, escalation: Escalation, action: str, data: dict) -> Callable:
        user = request.user
        operations = {
            "assign_me": lambda: escalation_assign(escalation=escalation, assignee=user, actor=user),
            "assign": lambda: escalation_assign(escalation=escalation, assignee=_staff(data.get("assignee")), actor=user),
            "resolve": lambda: escalation_resolve(escalation=escalation, actor=user),
            "return": lambda: escalation_return(escalation=escalation, actor=user),
            "priority": lambda: escalation_set_priority(escalation=escalation, actor=user,
                                                        priority=_priority(data.get("priority"))),
        }
        if action not in operations:
            raise PermissionDenied(f"Unknown action {action!r}")
        return operations[action]

    def _attempt(self, request: HttpRequest, operation: Callable, success: str = "") -> str:
        """Run one service call; a refused action becomes an admin message (403 stays 403)."""
        try:
            operation()
        except EscalationError as error:
            messages.error(request, str(error))
            return str(error)
        if success:
            messages.success(request, f"Done: {success.replace('_', ' ')}.")
        return ""

    # ------------------------------------------------------------------ bulk actions on the queue

    def _bulk(self, request: HttpRequest, queryset: QuerySet[Escalation], action: str, data: dict | None = None) -> None:
        done, refused = 0, []
        for escalation in queryset:
            try:
                self._operation(request, escalation, action, data or {})()
                done += 1
            except (EscalationError, PermissionDenied) as error:
                refused.append(f"#{escalation.pk}: {error}")
        if done:
            messages.success(request, f"{done} escalation(s) updated.")
        for line in refused:
            messages.error(request, line)

    @admin.action(description="Assign to me", permissions=["change"])
    def assign_to_me(self, request: HttpRequest, queryset: QuerySet[Escalation]) -> None:
        self._bulk(request, queryset, "assign_me")

    @admin.action(description="Assign to someone…", permissions=["change"])
    def assign_to(self, request: HttpRequest, queryset: QuerySet[Escalation]) -> HttpResponse | None:
        if "apply" in request.POST:
            return self._bulk(request, queryset, "assign", {"assignee": request.POST.get("assignee")})
        context = {**self.admin_site.each_context(request), "queryset": queryset, "opts": self.model._meta,
                   "agents": selectors.support_agents(), "title": "Assign escalations"}
        return TemplateResponse(request, "admin/escalations/escalation/assign.html", context)

    @admin.action(description="Resolve", permissions=["change"])
    def resolve(self, request: HttpRequest, queryset: QuerySet[Escalation]) -> None:
        self._bulk(request, queryset, "resolve")

    @admin.action(description="Return to the bot", permissions=["change"])
    def return_to_bot(self, request: HttpRequest, queryset: QuerySet[Escalation]) -> None:
        self._bulk(request, queryset, "return")

    @admin.action(description="Set priority: urgent", permissions=["change"])
    def priority_urgent(self, request: HttpRequest, queryset: QuerySet[Escalation]) -> None:
        self._bulk(request, queryset, "priority", {"priority": Escalation.Priority.URGENT})

    @admin.action(description="Set priority: high", permissions=["change"])
    def priority_high(self, request: HttpRequest, queryset: QuerySet[Escalation]) -> None:
        self._bulk(request, queryset, "priority", {"priority": Escalation.Priority.HIGH})

    @admin.action(description="Set priority: normal", permissions=["change"])
    def priority_normal(self, request: HttpRequest, queryset: QuerySet[Escalation]) -> None:
        self._bulk(request, queryset, "priority", {"priority": Escalation.Priority.NORMAL})

    @admin.action(description="Set priority: low", permissions=["change"])
    def priority_low(self, request: HttpRequest, queryset: QuerySet[Escalation]) -> None:
        self._bulk(request, queryset, "priority", {"priority": Escalation.Priority.LOW})


def _staff(user_id: object) -> object:
    value = str(user_id or "").strip()
    user = get_user_model().objects.filter(pk=int(value)).first() if value.isdigit() else None
    if user is None:
        raise EscalationError("Choose who to assign the escalation to.")
    return user


def _priority(value: object) -> int:
    try:
        return Escalation.Priority(int(str(value))).value
    except ValueError:
        raise EscalationError("Choose a priority.") from None


@admin.register(CannedReply)
class CannedReplyAdmin(admin.ModelAdmin):
    list_display = ("title",)
    search_fields = ("title", "body")


@admin.register(EscalationEvent)
class EscalationEventAdmin(admin.ModelAdmin):
    """The audit trail, read-only."""

    list_display = ("created_at", "escalation", "actor", "action", "detail")
    list_filter = ("action",)
    list_select_related = ("escalation", "actor")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
