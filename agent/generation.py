"""Generation with an LLM through litellm: streaming, function calling, fallbacks."""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings

from agent import metrics
from agent.guardrails import redact_pii, redact_value
from agent.llm import DoneEvent, FailoverEvent, LLMConfig, TokenEvent, stream_chat, supports_tools, trim_to_window
from agent.prompts import build_messages
from agent.schema import AgentEvent, AgentResponse, HistoryItem, Restart, Token
from agent.tools.registry import llm_tools

if TYPE_CHECKING:
    from agent.orchestrator import Run

log = logging.getLogger(__name__)


def llm_config() -> LLMConfig:
    return LLMConfig(
        model=settings.LLM_MODEL,
        fallback_models=tuple(settings.LLM_FALLBACK_MODELS),
        api_base=settings.LLM_API_BASE,
        api_key=settings.LLM_API_KEY,
        timeout_s=settings.LLM_TIMEOUT_S,
        chunk_timeout_s=settings.LLM_CHUNK_TIMEOUT_S,
        first_chunk_timeout_s=settings.LLM_CHUNK_TIMEOUT_S,
        max_tokens=settings.LLM_MAX_TOKENS,
    )


def _summary_text(state: Run) -> str:
    summary = next((m for m in state.ctx.memories if m.kind == "summary"), None)
    return redact_pii(summary.content).text if summary else ""


async def generate_with_llm(state: Run, response: AgentResponse) -> AsyncIterator[AgentEvent]:
    """Stream the model's reply; run the tool calls it asks for (at most MAX_TOOL_ROUNDS)."""
    from agent.orchestrator import MAX_TOOL_ROUNDS, sources_of

    config = llm_config()
    tools = llm_tools() if supports_tools(config.model) else []
    messages = build_messages(state.ctx, tools, _summary_text(state))
    messages = trim_to_window(config.model, messages, reserve=config.max_tokens)
    specs = [t.function_spec() for t in tools] or None
    response.mode, response.model = "llm", config.model
    for round_ in range(MAX_TOOL_ROUNDS + 1):
        done = None
        async for event in stream_chat(config, messages, tools=specs if round_ < MAX_TOOL_ROUNDS else None):
            if isinstance(event, TokenEvent):
                response.text += event.text
                yield Token(event.text)
            elif isinstance(event, FailoverEvent):
                metrics.FAILOVERS.labels(event.model).inc()
                response.flags.setdefault("failovers", []).append({"model": event.model, "error": event.error[:200]})
                if event.restarted and response.text:
                    response.text = ""
                    yield Restart(f"{event.model} failed")
            elif isinstance(event, DoneEvent):
                done = event
        _account(response, done)
        if not done or not done.tool_calls:
            break
        messages += await sync_to_async(_run_tool_calls)(state, done)
    response.sources = sources_of(state.ctx, _cited_numbers(response.text))


def _account(response: AgentResponse, done: DoneEvent | None) -> None:
    if done is None:
        return
    response.model = done.model
    response.prompt_tokens += done.usage.prompt_tokens
    response.completion_tokens += done.usage.completion_tokens
    response.cost_usd += done.usage.cost_usd
    metrics.TOKENS.labels("prompt").inc(done.usage.prompt_tokens)
    metrics.TOKENS.labels("completion").inc(done.usage.completion_tokens)
    metrics.COST.inc(done.usage.cost_usd)


def _run_tool_calls(state: Run, done: DoneEvent) -> list[dict]:
    """Execute the model's tool calls; return the assistant + tool messages to continue with."""
    from agent.orchestrator import call_tool

    assistant = {"role": "assistant", "content": None, "tool_calls": [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
        for c in done.tool_calls]}
    replies = []
    for request in done.tool_calls:
        offered = {t.name for t in llm_tools()}
        if request.name not in offered or request.error:
            content = f"error: {request.error or 'unknown tool ' + request.name}"
        else:
            content = _tool_message(call_tool(state, request.name, **request.arguments))
        replies.append({"role": "tool", "tool_call_id": request.id, "content": content[:4000]})
    return [assistant, *replies]


def _tool_message(result: object) -> str:
    if result is None:
        return "error: this tool is switched off"
    if result.ok:  # type: ignore[attr-defined]
        return json.dumps(redact_value(result.data), default=str)  # type: ignore[attr-defined]
    return "error: " + (result.error or result.summary)  # type: ignore[attr-defined]


def _cited_numbers(text: str) -> list[int]:
    from agent.claims import CITATION

    seen: list[int] = []
    for match in CITATION.findall(text):
        if int(match) not in seen:
            seen.append(int(match))
    return seen


SUMMARY_PROMPT = ("Summarise this customer-support conversation in at most 5 short bullet points, keeping "
                  "the customer's problem, order numbers, decisions and open questions. When a summary so far "
                  "is given, return it updated with the new turns. No preamble.")


def llm_summary(turns: list[HistoryItem], previous: str = "") -> str:
    """The running summary updated by the LLM with `turns`; empty when it fails (the caller falls back)."""
    from agent.prompts import history_messages

    transcript = "\n".join(f"{m['role']}: {m['content']}" for m in history_messages(turns))[-12000:]
    if previous:  # only the new turns are sent: the summary stands for everything before them
        transcript = f"Summary so far:\n{redact_pii(previous).text}\n\nNew turns:\n{transcript}"
    messages = [{"role": "system", "content": SUMMARY_PROMPT}, {"role": "user", "content": transcript}]
    try:
        return async_to_sync(_collect)(messages)
    except Exception as error:  # a summary is a nicety; never fail the reply for it
        log.warning("summary failed", extra={"error": str(error)[:300]})
        return ""


async def _collect(messages: list[dict]) -> str:
    text = ""
    async with asyncio.timeout(llm_config().timeout_s):
        async for event in stream_chat(llm_config(), messages):
            if isinstance(event, TokenEvent):
                text += event.text
            elif isinstance(event, FailoverEvent) and event.restarted:
                text = ""
    return text.strip()
