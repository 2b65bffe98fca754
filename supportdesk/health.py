"""Liveness and readiness: one entry per component, 200 only when all are ok."""
from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse

HEARTBEAT_KEY = "celery:heartbeat"


def check_database() -> tuple[bool, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return True, connection.vendor


def check_pgvector() -> tuple[bool, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    return (True, f"vector {row[0]}") if row else (False, "extension 'vector' is not installed")


def check_redis() -> tuple[bool, str]:
    from django_redis import get_redis_connection

    client = get_redis_connection("default")
    client.ping()
    policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "?")
    if policy.startswith("allkeys"):
        return False, f"maxmemory-policy {policy} could evict broker keys; use volatile-lru or noeviction"
    return True, f"maxmemory-policy {policy}"


def check_celery() -> tuple[bool, str]:
    beat = cache.get(HEARTBEAT_KEY)
    age = time.time() - float(beat) if beat is not None else None
    if age is not None and age <= settings.CELERY_HEARTBEAT_MAX_AGE_S:
        return True, f"last heartbeat {age:.0f}s ago"
    # Busy workers can leave the beat task queued; their main process still answers a ping.
    from supportdesk.celery import app

    replies = app.control.ping(timeout=1.0)
    if replies:
        return True, f"{len(replies)} worker(s) answered a ping"
    return False, "no worker heartbeat yet" if age is None else f"last heartbeat {age:.0f}s ago"


def check_embeddings() -> tuple[bool, str]:
    from knowledge.embeddings import model_status

    return model_status()


def check_llm() -> tuple[bool, str]:
    if not settings.LLM_MODEL:
        return True, "no LLM configured: grounded mode"
    return True, f"{settings.LLM_MODEL} (fallbacks: {', '.join(settings.LLM_FALLBACK_MODELS) or 'none'})"


CHECKS: dict[str, Callable[[], tuple[bool, str]]] = {
    "database": check_database,
    "pgvector": check_pgvector,
    "redis": check_redis,
    "celery": check_celery,
    "embedding_model": check_embeddings,
    "llm": check_llm,
}


def run_check(check: Callable[[], tuple[bool, str]]) -> dict:
    started = time.perf_counter()
    try:
        ok, detail = check()
    except Exception as error:  # a readiness probe reports failures, it never raises
        ok, detail = False, f"{type(error).__name__}: {error}"[:300]
    return {"ok": ok, "detail": detail, "ms": round(1000 * (time.perf_counter() - started), 1)}


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    components = {name: run_check(check) for name, check in CHECKS.items()}
    ready = all(c["ok"] for c in components.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "components": components}, status=200 if ready else 503)
