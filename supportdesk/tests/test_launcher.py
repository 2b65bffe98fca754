"""`make run`'s launcher on a fresh data folder: ready, demo loaded, Ctrl-C stops everything."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from django.conf import settings

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(var_dir: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update({"VAR_DIR": str(var_dir), "HOST": "127.0.0.1", "PORT": str(port),
                "DJANGO_SUPERUSER_PASSWORD": "launcher-test-pw", "LOG_LEVEL": "WARNING"})
    return subprocess.Popen([sys.executable, "-m", "supportdesk.launcher"], cwd=settings.BASE_DIR, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def readyz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)
    except OSError:
        return 0, {}


def wait_ready(port: int, seconds: float = 240) -> dict:
    deadline, body = time.monotonic() + seconds, {}
    while time.monotonic() < deadline:
        status, body = readyz(port)
        if status == 200:
            return body
        time.sleep(1)
    raise AssertionError(f"/readyz never reached 200: {body}")


def demo_documents(var_dir: Path) -> int:
    import psycopg

    with psycopg.connect(host=str(var_dir / "pgdata"), dbname="supportdesk", user="postgres") as conn:
        return conn.execute("SELECT count(*) FROM knowledge_document WHERE status = 'ready'").fetchone()[0]


def stop(proc: subprocess.Popen) -> str:
    family = [proc.pid] + [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    output, _ = proc.communicate(timeout=60)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(alive(pid) for pid in family):
        time.sleep(0.2)
    assert not [pid for pid in family if alive(pid)], "every process stops on Ctrl-C"
    return output


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_make_run_starts_everything_and_a_second_run_reuses_the_data(tmp_path: Path) -> None:
    var_dir, port = tmp_path / "var", free_port()
    proc = start(var_dir, port)
    try:
        body = wait_ready(port)
        assert all(c["ok"] for c in body["components"].values())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
            assert page.status == 200
        deadline = time.monotonic() + 120
        while demo_documents(var_dir) < 16 and time.monotonic() < deadline:
            time.sleep(1)
        assert demo_documents(var_dir) >= 10
        postmaster = int((var_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    finally:
        output = stop(proc)
    assert "Chat:  http://127.0.0.1:" in output and "Admin: http://127.0.0.1:" in output
    assert "admin user: created with DJANGO_SUPERUSER_PASSWORD" in output
    assert not alive(postmaster), "the embedded Postgres stops with the launcher"

    proc = start(var_dir, port)
    try:
        wait_ready(port)
    finally:
        output = stop(proc)
    assert "0 added" in output and "admin user: exists" in output
