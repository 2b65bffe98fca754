"""The converted text of files attached to this message."""
from __future__ import annotations

from typing import Any

from agent.tools.base import BaseTool
from agent.schema import AgentContext, ToolResult

MAX_CHARS_PER_ATTACHMENT = 6000


class AttachmentsTool(BaseTool):
    name = "attachments"
    description = "Reads the files the user attached to the current message."

    def run(self, ctx: AgentContext, **args: Any) -> ToolResult:
        ctx.attachments = ctx.store.attachments()
        ready = [a for a in ctx.attachments if a.status == "ready"]
        names = ", ".join(a.name for a in ready) or "none"
        return ToolResult(ok=True, data=[a.name for a in ready], summary=f"{len(ready)} readable: {names}")
