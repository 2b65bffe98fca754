"""Hybrid search over the knowledge base (pgvector + Postgres full text)."""
from __future__ import annotations

from typing import Any

from agent.tools.base import BaseTool
from agent.schema import AgentContext, ToolResult

SEARCH_K = 5


def _is_follow_up(text: str) -> bool:
    return len(text.split()) <= 4


def search_query(ctx: AgentContext) -> str:
    """The message, plus the previous user turn when the message is a short follow-up."""
    text = ctx.redacted_text or ctx.text
    if _is_follow_up(text):
        previous = [h.content for h in ctx.history if h.role == "user"][-1:]
        text = " ".join(previous + [text])
    return text


class KnowledgeSearchTool(BaseTool):
    name = "knowledge_search"
    description = "Searches the help centre and returns the most relevant passages with a confidence."
    parameters = {"type": "object", "properties": {"query": {"type": "string"}, "k": {"type": "integer"}},
                  "required": ["query"]}

    def warm(self, ctx: AgentContext) -> None:
        # A short follow-up borrows the previous turn from memory, which is not loaded yet.
        if _is_follow_up(ctx.redacted_text or ctx.text):
            return
        from knowledge.retrieval import in_transaction, prefetch_query, search_ahead

        query = search_query(ctx)
        if in_transaction():  # the search's own connection could not see this one's rows
            prefetch_query(query)
        else:  # the whole search runs while memory loads
            ctx.ahead[self.name] = ((query, SEARCH_K), search_ahead(query, k=SEARCH_K))

    def run(self, ctx: AgentContext, **args: Any) -> ToolResult:
        from knowledge.retrieval import search

        query, k = args.get("query") or search_query(ctx), int(args.get("k") or SEARCH_K)
        started_for, future = ctx.ahead.pop(self.name, (None, None))
        response = future.result() if started_for == (query, k) else search(query, k=k)
        ctx.search = response
        titles = "; ".join(f"{r.title} › {r.heading_path}"[:80] for r in response.results[:3])
        return ToolResult(ok=True, data=[r.chunk_id for r in response.results],
                          summary=f"{len(response.results)} results, confidence {response.confidence:.2f}: {titles}")
