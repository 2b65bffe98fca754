"""Embedded Postgres and Redis: shared by processes, stopped by the last one to leave."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from django.conf import settings

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from supportdesk import embedded
    kind, folder = sys.argv[1], Path(sys.argv[2])
    url = embedded.postgres_url(folder) if kind == "pg" else embedded.redis_url(folder / "r.rdb")
    print(url, flush=True)
    sys.stdin.readline()  # hold the server until told to go
    """
)


def start_holder(kind: str, folder: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, kind, str(folder)], cwd=settings.BASE_DIR,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def release(proc: subprocess.Popen) -> None:
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.wait(timeout=30) == 0


def postgres_pid(folder: Path) -> int | None:
    pidfile = folder / "postmaster.pid"
    return int(pidfile.read_text().split()[0]) if pidfile.exists() else None


def wait_gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_two_processes_share_one_postgres_and_the_last_one_stops_it(tmp_path: Path) -> None:
    import psycopg

    folder = tmp_path / "pg"
    first, url = start_holder("pg", folder)
    second, url_again = start_holder("pg", folder)
    pid = postgres_pid(folder)
    assert url == url_again and pid is not None
    with psycopg.connect(url) as conn:
        assert conn.execute("CREATE EXTENSION IF NOT EXISTS vector").pgresult is not None
        assert conn.execute("SELECT extversion FROM pg_extension WHERE extname='vector'").fetchone()[0] >= "0.8"
    release(first)
    assert psutil.pid_exists(pid), "the server must survive while another process holds it"
    release(second)
    assert wait_gone(pid), "the last process leaving must stop the server"


@pytest.mark.slow
def test_data_survives_a_restart_of_the_embedded_postgres(tmp_path: Path) -> None:
    import psycopg

    folder = tmp_path / "pg"
    proc, url = start_holder("pg", folder)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")
    release(proc)
    proc, url = start_holder("pg", folder)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT v FROM kept").fetchone()[0] == "still here"
    release(proc)


def test_two_processes_share_one_redis_and_the_last_one_stops_it(tmp_path: Path) -> None:
    import redis

    first, url = start_holder("redis", tmp_path)
    second, url_again = start_holder("redis", tmp_path)
    assert url == url_again
    client = redis.Redis.from_url(url)
    pid = client.info()["process_id"]
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "volatile-lru"
    client.close()
    release(first)
    probe = redis.Redis.from_url(url)
    assert probe.ping(), "the server must survive while another process holds it"
    probe.close()
    release(second)
    assert wait_gone(pid)
