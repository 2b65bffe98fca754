"""Prometheus metrics of the escalation queue (defined once, at import; django-prometheus serves them)."""
from prometheus_client import Counter, Gauge, Histogram

OPENED = Counter("supportdesk_escalations_total", "Escalations opened, by reason", ["reason", "priority"])
FIRST_RESPONSE = Histogram(
    "supportdesk_escalation_first_response_seconds",
    "From escalation opened to the first human reply",
    ["priority"],
    buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400),
)
SLA_BREACHES = Counter("supportdesk_escalation_sla_breaches_total", "Escalations that passed their SLA unanswered",
                       ["priority"])
QUEUE_SIZE = Gauge("supportdesk_escalation_queue_size", "Escalations waiting or being handled", ["status"])
WEBHOOKS = Counter("supportdesk_escalation_webhooks_total", "Outgoing escalation webhook attempts", ["outcome"])
