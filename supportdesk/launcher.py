"""`make run`: everything on embedded defaults, one Ctrl-C stops it all.

This process owns the embedded Postgres and Redis (when DATABASE_URL / REDIS_URL
are unset) and hands their URLs to Daphne and the Celery worker, so the children
share one server each and never stop it themselves.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportdesk.settings")
    from supportdesk.boot import load_settings_or_exit

    load_settings_or_exit()
    import django

    django.setup()


def _child_env() -> dict[str, str]:
    from django.conf import settings

    env = dict(os.environ)
    env["DATABASE_URL"] = _database_url(settings.DATABASES["default"])
    env["REDIS_URL"] = settings.REDIS_URL
    env["SECRET_KEY"] = settings.SECRET_KEY
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _database_url(db: dict) -> str:
    host = db.get("OPTIONS", {}).get("host")
    if host:  # embedded server on a unix socket
        return f"postgresql://{db['USER']}:@/{db['NAME']}?host={host}"
    auth = f"{db['USER']}:{db['PASSWORD']}@" if db.get("USER") else ""
    return f"postgresql://{auth}{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def _prepare() -> None:
    from django.core.management import call_command

    print("• migrating the database", flush=True)
    call_command("migrate", interactive=False, verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    print("• loading the demo help centre", flush=True)
    call_command("load_demo")
    call_command("ensure_admin")


def _start_children(env: dict[str, str], host: str, port: str) -> list[subprocess.Popen]:
    python = sys.executable
    web = [python, "-m", "daphne", "-b", host, "-p", port, "supportdesk.asgi:application"]
    worker = [python, "-m", "celery", "-A", "supportdesk.celery", "worker", "-B", "--concurrency", "2",
              "--loglevel", "INFO", "--schedule", str(BASE_DIR / "var" / "celerybeat-schedule")]
    return [subprocess.Popen(cmd, cwd=BASE_DIR, env=env) for cmd in (web, worker)]


def _stop(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + 15
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    from supportdesk import embedded

    embedded.stop_all()


def main() -> int:
    _setup_django()
    _prepare()
    host, port = os.environ.get("HOST", "127.0.0.1"), os.environ.get("PORT", "8000")
    children = _start_children(_child_env(), host, port)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(f"\n  Chat:  http://{host}:{port}/\n  Admin: http://{host}:{port}/admin/\n  Ready: http://{host}:{port}/readyz\n"
          "  Press Ctrl-C to stop everything.\n", flush=True)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        print("A process exited unexpectedly; stopping the rest.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping…", flush=True)
        return 0
    finally:
        _stop(children)


if __name__ == "__main__":
    sys.exit(main())
