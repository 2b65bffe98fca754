"""The tool interface: a name, a description, a JSON-schema of parameters and run()."""
from __future__ import annotations

from typing import Any, ClassVar

from agent.schema import AgentContext, ToolResult


class ToolError(Exception):
    """A failure the tool explains in words; `recoverable` says if the agent can go on."""

    def __init__(self, message: str, *, recoverable: bool = True) -> None:
        super().__init__(message)
        self.recoverable = recoverable


class BaseTool:
    name: ClassVar[str]
    description: ClassVar[str]
    parameters: ClassVar[dict[str, Any]] = {"type": "object", "properties": {}}
    # Offered to the LLM through function calling (pipeline tools are called by the orchestrator).
    offered_to_llm: ClassVar[bool] = False
    # Such a call is recorded for a human to approve instead of being run.
    approval_required: ClassVar[bool] = False

    def run(self, ctx: AgentContext, **args: Any) -> ToolResult:
        raise NotImplementedError

    def warm(self, ctx: AgentContext) -> None:
        """Start slow work that needs only the message, before the pipeline reaches this tool.

        Called at the start of every run for the pipeline tools, on the pipeline's thread,
        so such work (a search, say) overlaps the steps before; a Future it leaves in
        ctx.ahead[self.name] is run()'s to collect. It must be cheap, start nothing the
        run would not do anyway, and never raise.
        """

    @classmethod
    def function_spec(cls) -> dict:
        """The OpenAI / litellm function-calling description of this tool."""
        return {"type": "function",
                "function": {"name": cls.name, "description": cls.description, "parameters": cls.parameters}}
