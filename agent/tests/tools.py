"""A tool that only exists in tests: it needs a human's approval before it may run."""
from typing import Any

from agent.schema import AgentContext, ToolResult
from agent.tools.base import BaseTool


class IssueRefundTool(BaseTool):
    name = "issue_refund"
    description = "Refunds an order."
    parameters = {"type": "object", "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}}}
    offered_to_llm = True
    approval_required = True
    runs = 0

    def run(self, ctx: AgentContext, **args: Any) -> ToolResult:
        IssueRefundTool.runs += 1
        return ToolResult(ok=True, summary="refunded")
