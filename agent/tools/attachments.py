"""The converted text of files attached to this message."""
from __future__ import annotations

from typing import Any

from agent.attachments import load_images, vision_enabled
from agent.tools.base import BaseTool
from agent.schema import AgentContext, ToolResult

MAX_CHARS_PER_ATTACHMENT = 6000


class AttachmentsTool(BaseTool):
    name = "attachments"
    description = "Reads the files the user attached to the current message."

    def run(self, ctx: AgentContext, **args: Any) -> ToolResult:
        ctx.attachments = ctx.store.attachments()
        if vision_enabled():  # read here, in the pipeline's worker thread: generation runs on the event loop
            ctx.attachments, ctx.image_notes = load_images(ctx.store, ctx.attachments)
        ready = [a for a in ctx.attachments if a.status == "ready"]
        names = ", ".join(a.name for a in ready) or "none"
        shown = sum(bool(a.data) for a in ctx.attachments)
        return ToolResult(ok=True, data=[a.name for a in ready],
                          summary=f"{len(ready)} readable: {names}; {shown} image(s) passed to the model")
