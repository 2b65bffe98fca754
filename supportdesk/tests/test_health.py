"""/healthz is liveness; /readyz reports each component and degrades to 503."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import override_settings

from knowledge.embeddings import get_model
from supportdesk import embedded
from supportdesk.tasks import heartbeat

COMPONENTS = {"database", "pgvector", "redis", "celery", "embedding_model", "llm"}


@pytest.fixture
def worker_alive():
    heartbeat.delay()  # eager in tests: what beat + a worker do every 15 s


def test_healthz_answers_without_touching_dependencies(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_when_every_component_is_ok(client, db, worker_alive) -> None:
    get_model()
    response = client.get("/readyz")
    body = response.json()
    assert set(body["components"]) == COMPONENTS
    assert response.status_code == 200, body
    assert all(c["ok"] for c in body["components"].values())
    assert "grounded" in body["components"]["llm"]["detail"]


def test_readyz_is_503_without_a_worker_heartbeat(client, db) -> None:
    cache.clear()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["components"]["celery"] == {**response.json()["components"]["celery"], "ok": False}


@pytest.fixture
def doomed_redis(tmp_path: Path):
    """A Redis of our own that the test can stop."""
    url = embedded.redis_url(tmp_path / "doomed.rdb")
    handle = embedded._handles[f"redis:{tmp_path / 'doomed.rdb'}"]
    yield url, handle
    embedded._handles.pop(f"redis:{tmp_path / 'doomed.rdb'}", None)


def test_readyz_degrades_and_the_chat_still_loads_when_redis_stops(client, db, doomed_redis, caplog) -> None:
    url, handle = doomed_redis
    caches = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url,
                          "OPTIONS": {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5}}}
    with override_settings(CACHES=caches):
        assert client.get("/readyz").json()["components"]["redis"]["ok"] is True
        embedded.shutdown_redis(handle.socket_file)  # the Redis server goes away
        with caplog.at_level(logging.ERROR, logger="supportdesk.redis"):
            response = client.get("/readyz")
            assert cache.get("anything") is None  # a miss, not an exception
        assert response.status_code == 503
        assert response.json()["components"]["redis"]["ok"] is False
        assert client.get("/").status_code == 200
    assert any("ConnectionError" in r.getMessage() or r.exc_info for r in caplog.records)
