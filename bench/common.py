"""Shared start-up for the benchmarks: Django on its own embedded data folder, migrated."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"


def setup_django(var_name: str, **env: str) -> Path:
    """Start Django with VAR_DIR=var/<var_name> so a benchmark never touches real data."""
    sys.path.insert(0, str(ROOT))
    var_dir = ROOT / "var" / var_name
    os.environ.setdefault("VAR_DIR", str(var_dir))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportdesk.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    for key, value in env.items():
        os.environ.setdefault(key, value)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return Path(os.environ["VAR_DIR"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"a bench process exited early ({process.args})")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise SystemExit(f"nothing listening on {port}")


def start(command: list[str], env: dict[str, str] | None, port: int, cwd: Path = ROOT, **popen: object) -> subprocess.Popen:
    """A server process, once it listens on `port`."""
    process = subprocess.Popen(command, cwd=cwd, env=env, **popen)  # type: ignore[call-overload]
    wait_for_port(port, process)
    return process
