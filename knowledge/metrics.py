"""Prometheus metrics of the knowledge app, defined once at import (django-prometheus serves them)."""
from __future__ import annotations

from prometheus_client import Histogram

# Buckets around the latencies we see: ~5 ms full text, ~15-40 ms dense with a cached query
# embedding, a few hundred ms when the query must be embedded on a cold model.
RETRIEVAL_SECONDS = Histogram(
    "supportdesk_retrieval_seconds",
    "Time spent answering one knowledge search, by retrieval mode.",
    ["mode"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
