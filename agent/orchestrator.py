"""The agent: one user message in, a stream of events out.

Fixed steps: load memory → read attachments → search the knowledge base → check the
escalation rules → generate (LLM, or grounded mode) while streaming → store memories
→ return the AgentResponse. It knows nothing of requests or sockets; every step is
a tool call with an audit row.
"""
from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from agent import audit, grounded, metrics
from agent.claims import unsupported_claims
from agent.guardrails import leaks_system_prompt, redact_pii, redact_value
from agent.prompts import instructions
from agent.schema import (
    AgentContext,
    AgentEvent,
    AgentResponse,
    Final,
    Restart,
    Source,
    Token,
    ToolCallRecord,
    ToolResult,
)
from agent.selectors import assistant_persona
from agent.tools.base import ToolError
from agent.tools.registry import get_tool
from knowledge.injection import detect_injection

log = logging.getLogger(__name__)
MAX_TOOL_ROUNDS = 2
LEAK_REPLY = "Sorry, I can't share that. Is there anything else I can help you with about your order or account?"
LLM_DOWN_NOTE = "(Our AI assistant is unavailable right now, so here is what our help centre says.)"
SELF_HARM_NOTE = ("I'm really sorry you're going through this. If you are in danger or thinking about harming "
                  "yourself, please call your local emergency number or a crisis line right now. ")
HANDOVER = "I'm connecting you with a person from our support team; they will continue here in this chat."


# Steps 1-4: (timing name, tool, arguments), in this order.
PIPELINE = (("memory", "memory", {"action": "load"}), ("attachments", "attachments", {}),
            ("retrieval", "knowledge_search", {}), ("escalation", "escalation_check", {}))


@dataclass
class Run:
    """What one pipeline run accumulates."""

    ctx: AgentContext
    started: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)
    calls: list[ToolCallRecord] = field(default_factory=list)
    decision: Any = None
    tool_failures: list[str] = field(default_factory=list)
    approvals: list[str] = field(default_factory=list)

    def lap(self, step: str, since: float) -> None:
        self.timings[step] = round(1000 * (time.perf_counter() - since), 2)


def call_tool(run: Run, name: str, **args: Any) -> ToolResult | None:
    """Run one tool with timing and an audit record; None when the tool is switched off."""
    tool = get_tool(name)
    if tool is None:
        return None
    started = time.perf_counter()
    if tool.approval_required:
        run.approvals.append(name)
        run.calls.append(ToolCallRecord(name, dict(args), "pending_approval", "waiting for a human to approve", 0.0,
                                        approval_required=True))
        return ToolResult(ok=False, summary="This action needs a staff member's approval; it has been requested.")
    try:
        result = tool.run(run.ctx, **args)
        status, error = "ok", ""
    except ToolError as exc:
        result, status, error = ToolResult(ok=False, error=str(exc)), "error", str(exc)
        if not exc.recoverable:
            run.tool_failures.append(name)
    except Exception as exc:  # a broken tool must not break the reply
        log.exception("tool %s crashed", name)
        result, status, error = ToolResult(ok=False, error="internal error"), "error", f"{type(exc).__name__}: {exc}"
        run.tool_failures.append(name)
    duration = round(1000 * (time.perf_counter() - started), 2)
    run.calls.append(ToolCallRecord(name, dict(args), status, result.summary, duration, error=error))
    metrics.TOOL_CALLS.labels(name, status).inc()
    return result


def prepare(run: Run) -> None:
    """Steps 1–4, in one worker thread (they all touch the database)."""
    ctx = run.ctx
    _warm_tools(ctx)  # here, not on the event loop: a tool may check this thread's transaction
    ctx.run_id = audit.run_start(ctx)
    ctx.instructions = instructions(assistant_persona())
    _check_injection(ctx)
    for step, name, args in PIPELINE:
        since = time.perf_counter()
        result = call_tool(run, name, **args)
        if name == "escalation_check" and result is not None and result.ok:
            run.decision = result.data
        run.lap(step, since)


def _warm_tools(ctx: AgentContext) -> None:
    for _, name, _ in PIPELINE:
        tool = get_tool(name)
        try:
            if tool is not None:
                tool.warm(ctx)
        except Exception:  # warming is an optimisation; the step itself will report trouble
            log.exception("tool %s failed to warm up", name)


def _check_injection(ctx: AgentContext) -> None:
    verdict = detect_injection(ctx.text)
    if verdict.flagged:
        ctx.flags["injection"] = list(verdict.matches)
        metrics.INJECTIONS.inc()
        log.warning("prompt injection attempt", extra={"patterns": list(verdict.matches)})


def sources_of(ctx: AgentContext, cited: list[int] | None = None) -> list[Source]:
    results = ctx.search.results if ctx.search is not None else []
    numbers = cited if cited is not None else list(range(1, len(results) + 1))
    return [Source(n, r.chunk_id, r.document_id, r.title, r.heading_path, r.location)
            for n, r in ((n, results[n - 1]) for n in numbers if 0 < n <= len(results))]


def confidence_of(ctx: AgentContext) -> float:
    return float(ctx.search.confidence) if ctx.search is not None else 0.0


async def run(ctx: AgentContext) -> AsyncIterator[AgentEvent]:
    """The pipeline; yields Token/Restart events, then one Final."""
    state = Run(ctx)
    ctx.redacted_text = redact_pii(ctx.text).text
    await sync_to_async(prepare)(state)
    response = AgentResponse(text="", sources=[], confidence=confidence_of(ctx), mode="grounded")
    since = time.perf_counter()
    generator = _handover if state.decision is not None and state.decision.escalate else _generate
    async for event in generator(state, response):
        if isinstance(event, Token) and "first_token" not in state.timings:
            state.lap("first_token", state.started)
            metrics.FIRST_TOKEN.observe(state.timings["first_token"] / 1000)
        yield event
    state.lap("generation", since)
    await sync_to_async(finish)(state, response)
    yield Final(response)


async def _handover(state: Run, response: AgentResponse) -> AsyncIterator[AgentEvent]:
    decision = state.decision
    response.escalated, response.escalation_reason = True, decision.reason.value
    response.escalation_detail, response.escalation_priority = decision.detail, decision.priority
    response.text = (SELF_HARM_NOTE if decision.topic == "self_harm" else "") + HANDOVER
    for piece in grounded.tokens_of(response.text):
        yield Token(piece)


async def _generate(state: Run, response: AgentResponse) -> AsyncIterator[AgentEvent]:
    if settings.LLM_MODEL:
        from agent.generation import generate_with_llm
        from agent.llm import LLMUnavailable

        try:
            async for event in generate_with_llm(state, response):
                yield event
            return
        except LLMUnavailable as error:
            log.warning("LLM unavailable, answering in grounded mode", extra={"error": str(error)[:500]})
            response.flags["llm_unavailable"] = str(redact_value(str(error)))[:500]
            if response.text:
                yield Restart("llm unavailable")
    async for event in _grounded(state, response):
        yield event


async def _grounded(state: Run, response: AgentResponse) -> AsyncIterator[AgentEvent]:
    ctx = state.ctx
    extract = await sync_to_async(_grounded_extract)(ctx)
    note = LLM_DOWN_NOTE + "\n\n" if response.flags.get("llm_unavailable") else ""
    response.mode, response.model = "grounded", ""
    response.text = note + extract.text
    response.sources = sources_of(ctx, extract.cited)
    for piece in grounded.tokens_of(response.text):
        yield Token(piece)


def _grounded_extract(ctx: AgentContext) -> grounded.Extract:
    from agent.tools.knowledge_search import search_query

    results = ctx.search.results if ctx.search is not None else []
    confident = confidence_of(ctx) >= settings.GROUNDED_MIN_CONFIDENCE
    return grounded.compose(search_query(ctx), results, confident=confident)


def finish(state: Run, response: AgentResponse) -> None:
    """Steps 6–7: guardrails on the output, memories, audit rows."""
    ctx = state.ctx
    _check_output(state, response)
    _escalate_on_tool_trouble(state, response)
    since = time.perf_counter()
    summary, folded_until = _summary_update(ctx) or (None, None)
    call_tool(state, "memory", action="store", summary=summary, folded_until=folded_until)
    state.lap("store_memory", since)
    response.tool_calls, response.timings_ms = state.calls, state.timings
    response.flags.update(ctx.flags)
    response.run_id = ctx.run_id
    audit.run_finish(ctx, response)
    metrics.REPLIES.labels(response.mode, "escalated" if response.escalated else "answered").inc()


def _check_output(state: Run, response: AgentResponse) -> None:
    if response.mode != "llm":
        return
    # Only the instructions are secret: quoting a retrieved passage is the job.
    if leaks_system_prompt(response.text, state.ctx.instructions):
        metrics.LEAKS.inc()
        response.flags["prompt_leak_blocked"] = True
        response.text, response.sources = LEAK_REPLY, []
        return
    results = state.ctx.search.results if state.ctx.search is not None else []
    claims = unsupported_claims(response.text, {n: r.text for n, r in enumerate(results, start=1)})
    for claim in claims:
        metrics.UNSUPPORTED.labels(claim.problem).inc()
    if claims:
        response.flags["unsupported_claims"] = [{"sentence": c.sentence[:300], "problem": c.problem} for c in claims]


def _escalate_on_tool_trouble(state: Run, response: AgentResponse) -> None:
    if response.escalated or not (state.tool_failures or state.approvals):
        return
    result = call_tool(state, "escalation_check", tool_failures=state.tool_failures, approvals_pending=state.approvals)
    if result is not None and result.ok and result.data.escalate:
        decision = result.data
        response.escalated, response.escalation_reason = True, decision.reason.value
        response.escalation_detail, response.escalation_priority = decision.detail, decision.priority


def _summary_update(ctx: AgentContext) -> tuple[str, int] | None:
    """Fold the turns that left the verbatim window since the last update into the running summary.

    Incremental, so the cost no longer grows with the conversation: only the previous summary and
    the new turns are summarised. The LLM is asked once MEMORY_SUMMARY_EVERY customer turns have
    gathered; until then they stay in the prompt verbatim. Returns (summary, last message folded).
    """
    from agent.tools.memory import extractive_summary, summary_memory

    new = [item for item in ctx.unfolded_history if item.message_id is not None]
    if not new:
        return None
    summary = summary_memory(ctx.memories)
    # A summary without a watermark (written before there was one) may overlap the new turns: start over.
    previous = summary.content if summary is not None and summary.folded_until is not None else ""
    text = ""
    if settings.LLM_MODEL:
        if sum(item.role == "user" for item in new) < settings.MEMORY_SUMMARY_EVERY:
            return None
        from agent.generation import llm_summary

        text = llm_summary(new, previous)
    return (text or extractive_summary(new, previous=previous)), new[-1].message_id
