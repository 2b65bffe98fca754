"""Audit rows: AgentRun at the start of a reply, its ToolCalls when it ends."""
from __future__ import annotations

from decimal import Decimal

from django.utils import timezone

from agent.guardrails import redact_value
from agent.models import AgentRun, ToolCall
from agent.schema import AgentContext, AgentResponse


def run_start(ctx: AgentContext) -> int:
    run = AgentRun.objects.create(session_id=ctx.session_id, user_message_id=ctx.message_id, request_id=ctx.request_id)
    return run.pk


def run_finish(ctx: AgentContext, response: AgentResponse, *, reply_id: int | None = None) -> None:
    status = AgentRun.Status.ESCALATED if response.escalated else AgentRun.Status.COMPLETE
    AgentRun.objects.filter(pk=ctx.run_id).update(
        reply_id=reply_id, mode=response.mode, model=response.model, status=status,
        confidence=response.confidence, escalated=response.escalated, escalation_reason=response.escalation_reason,
        timings_ms=response.timings_ms, prompt_tokens=response.prompt_tokens,
        completion_tokens=response.completion_tokens, cost_usd=Decimal(str(round(response.cost_usd, 6))),
        flags=redact_value(response.flags), finished_at=timezone.now(),
    )
    ToolCall.objects.bulk_create([
        ToolCall(run_id=ctx.run_id, tool=c.tool, arguments=redact_value(c.arguments),
                 result_summary=str(redact_value(c.result_summary))[:2000], status=c.status,
                 approval_required=c.approval_required, duration_ms=c.duration_ms,
                 error=str(redact_value(c.error))[:2000], request_id=ctx.request_id,
                 session_public_id=ctx.session_public_id)
        for c in response.tool_calls
    ])


def run_link_reply(run_id: int, reply_id: int) -> None:
    AgentRun.objects.filter(pk=run_id).update(reply_id=reply_id)


def run_interrupted(run_id: int | None, reason: str = "") -> None:
    """A reply stopped mid-way (a human took over, the user left)."""
    if run_id is not None:
        AgentRun.objects.filter(pk=run_id, status=AgentRun.Status.RUNNING).update(
            status=AgentRun.Status.INTERRUPTED, error=reason[:500], finished_at=timezone.now())
