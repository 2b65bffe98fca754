from prometheus_client import Counter

FEEDBACK = Counter("supportdesk_feedback_total", "Feedback on assistant replies", ["value"])
MESSAGES = Counter("supportdesk_messages_total", "Chat messages received", ["channel"])
RATE_LIMITED = Counter("supportdesk_rate_limited_total", "Requests refused by a rate limit", ["kind", "channel"])
