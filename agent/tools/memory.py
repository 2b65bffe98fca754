"""Conversation memory: recent turns verbatim, a running summary, and stated facts."""
from __future__ import annotations

import re
from typing import Any

from django.conf import settings

from agent.tools.base import BaseTool
from agent.schema import AgentContext, HistoryItem, MemoryItem, ToolResult

# Facts worth remembering across turns; the patterns are deliberately conservative.
FACT_PATTERNS: dict[str, re.Pattern[str]] = {
    "name": re.compile(r"\b(?:my name is|call me|this is)\s+([A-Z][a-zA-Z'-]{1,30}(?:\s+[A-Z][a-zA-Z'-]{1,30})?)"),
    "email": re.compile(r"\b([A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})\b"),
    "order_number": re.compile(r"\b(NW-\d{4,10}|#?\d{6,10})\b(?<!\b\d{4}-\d{2})", re.IGNORECASE),
}
ORDER_CONTEXT = re.compile(r"\border\b", re.IGNORECASE)


def extract_facts(text: str) -> dict[str, str]:
    """Name, email and order number the user states about themselves."""
    facts = {}
    for key, pattern in FACT_PATTERNS.items():
        match = pattern.search(text)
        if match and (key != "order_number" or ORDER_CONTEXT.search(text) or match.group(1).upper().startswith("NW-")):
            facts[key] = match.group(1).lstrip("#")
    return facts


def extractive_summary(items: list[HistoryItem], previous: str = "", max_chars: int = 1200) -> str:
    """Without an LLM: keep the gist of each older user turn (its first sentence)."""
    lines = [previous] if previous else []
    for item in items:
        if item.role == "user":
            first = re.split(r"(?<=[.!?])\s", item.content.strip(), maxsplit=1)[0]
            lines.append(f"- The user asked: {first[:200]}")
    text = "\n".join(lines)
    return text[-max_chars:]


def summary_memory(memories: list[MemoryItem]) -> MemoryItem | None:
    return next((m for m in memories if m.kind == "summary"), None)


class MemoryTool(BaseTool):
    name = "memory"
    description = "Loads the conversation's recent turns, summary and facts, and stores new ones."
    parameters = {"type": "object", "properties": {"action": {"type": "string", "enum": ["load", "store"]}}}

    def run(self, ctx: AgentContext, **args: Any) -> ToolResult:
        return self._store(ctx, **args) if args.get("action") == "store" else self._load(ctx)

    def _load(self, ctx: AgentContext) -> ToolResult:
        ctx.memories = ctx.store.memories()
        # Beside the recent window: turns that left it since the summary was last written. Until
        # they are folded in, the prompt carries them verbatim so the model never loses them. Only
        # unexpired memories load, so an expired summary has no watermark and the fold starts over.
        summary = summary_memory(ctx.memories)
        ctx.history, ctx.unfolded_history = ctx.store.turns(settings.MEMORY_MAX_HISTORY,
                                                            after_id=summary.folded_until if summary else None)
        return ToolResult(ok=True, summary=f"{len(ctx.history)} recent messages, {len(ctx.unfolded_history)} "
                                           f"older not yet summarised, {len(ctx.memories)} memories")

    def _store(self, ctx: AgentContext, summary: str | None = None, folded_until: int | None = None,
               **_: Any) -> ToolResult:
        facts = extract_facts(ctx.text)
        ctx.store.save_memories(facts=facts, summary=summary, ttl_s=settings.MEMORY_TTL_S, folded_until=folded_until)
        stored = sorted(facts) + (["summary"] if summary else [])
        return ToolResult(ok=True, data=facts, summary="stored " + (", ".join(stored) or "nothing"))
