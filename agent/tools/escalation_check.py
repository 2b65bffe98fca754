"""Runs the escalation rules on this message and the conversation so far."""
from __future__ import annotations

from typing import Any

from agent.tools.base import BaseTool
from agent.schema import AgentContext, HistoryItem, ToolResult
from escalations.rules import Decision, RuleInput, Turn, evaluate


def past_turns(history: list[HistoryItem]) -> list[Turn]:
    """Each user message with the confidence of the reply that answered it."""
    turns: list[Turn] = []
    for i, item in enumerate(history):
        if item.role == "user":
            reply = next((h for h in history[i + 1:] if h.role == "assistant"), None)
            turns.append(Turn(user_text=item.content, confidence=reply.confidence if reply else None))
    return turns


class EscalationCheckTool(BaseTool):
    name = "escalation_check"
    description = "Decides whether a human must take over (user request, sentiment, low confidence, risky topics)."

    def run(self, ctx: AgentContext, **args: Any) -> ToolResult:
        confidence = ctx.search.confidence if ctx.search is not None else None
        decision: Decision = evaluate(
            RuleInput(message=ctx.text, history=past_turns(ctx.history), confidence=confidence,
                      tool_failures=tuple(args.get("tool_failures", ())),
                      approvals_pending=tuple(args.get("approvals_pending", ()))),
            config=rule_config(),
        )
        summary = f"escalate: {decision.reason.value} ({decision.detail})" if decision.escalate else "no escalation"
        return ToolResult(ok=True, data=decision, summary=summary)


def rule_config():  # type: ignore[no-untyped-def]
    from escalations.config import rule_config as configured

    return configured()
