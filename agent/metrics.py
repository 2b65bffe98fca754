"""The agent's Prometheus metrics (defined once, at import)."""
from prometheus_client import Counter, Histogram

REPLIES = Counter("supportdesk_agent_replies_total", "Replies produced by the agent", ["mode", "outcome"])
FIRST_TOKEN = Histogram("supportdesk_agent_first_token_seconds", "From message received to first token",
                        buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
TOOL_CALLS = Counter("supportdesk_agent_tool_calls_total", "Tool calls", ["tool", "status"])
INJECTIONS = Counter("supportdesk_agent_injection_attempts_total", "User messages flagged as prompt injection")
UNSUPPORTED = Counter("supportdesk_agent_unsupported_claims_total", "Generated sentences without support", ["problem"])
LEAKS = Counter("supportdesk_agent_prompt_leaks_blocked_total", "Replies blocked for repeating the system prompt")
FAILOVERS = Counter("supportdesk_llm_failovers_total", "LLM failures that moved to the next model", ["model"])
TOKENS = Counter("supportdesk_llm_tokens_total", "LLM tokens", ["kind"])
COST = Counter("supportdesk_llm_cost_usd_total", "LLM cost in US dollars")
