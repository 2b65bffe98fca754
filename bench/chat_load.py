"""Chat load: N concurrent WebSocket clients against Daphne with the fake streaming LLM.

    python bench/chat_load.py [--clients 200] [--messages 2] [--json PATH]

Everything runs on the embedded defaults under its own folder (var/bench-chat: its
own Postgres and Redis, migrated first), so it never touches your data. Processes:

- the fake OpenAI-compatible LLM (`python -m agent.fake_llm`), streaming every reply;
- Daphne with the real app (LLM_MODEL=openai/fake-model), the system under test;
- Daphne with a bare Channels echo consumer (defined below) that streams the same
  tokens at the same pace: the baseline for `echo_ratio`.

Each client opens a session (POST /api/sessions), connects with its cookie, then sends
--messages messages one after another, each time waiting for the complete reply.
Measured: TTFT (send → first token fragment), full-reply time, messages sent vs
replies received (lost must be 0), errors, the server's peak RSS, and
echo_ratio = our message rate / the echo server's message rate (target >= 0.5).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from common import free_port, start

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"lost": 0, "errors": 0, "echo_ratio": 0.5}
REPLY_WORDS = 30
COMPLETE = re.compile(r'class="msg msg-assistant[^"]*"[^>]*data-status="(complete|interrupted)"')
HANDED_OVER = re.compile(r'class="banner banner-(waiting|human)"')
ACK = 'data-client-id="{}"'
QUESTIONS = ["How long does a refund take?", "How do I start a return?", "Can I change my delivery address?",
             "Do you ship to Canada?", "My package says delivered but it is not here", "How do I reset my password?"]
TOKEN = re.compile(r'beforeend:#m-\d+-text')


# --- the baseline: a bare Channels consumer that streams the same reply ------------------


def reply_text(n: int) -> str:
    return " ".join(f"word{i}" for i in range(n))


def echo_application():  # noqa: ANN201 - built lazily: Django settings are needed first
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.urls import path

    delay = float(os.environ.get("BENCH_TOKEN_DELAY", "0.02"))

    class EchoConsumer(AsyncWebsocketConsumer):
        async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
            for i, word in enumerate(reply_text(REPLY_WORDS).split(" ")):
                await self.send(text_data=f'<span hx-swap-oob="beforeend:#m-{i}-text"> {word}</span>')
                await asyncio.sleep(delay)
            await self.send(text_data='<article class="msg msg-assistant" data-status="complete"></article>')

    return ProtocolTypeRouter({"websocket": URLRouter([path("ws/chat/", EchoConsumer.as_asgi())])})


# --- processes ---------------------------------------------------------------------------


def setup_django(var_dir: Path) -> dict[str, str]:
    """Start (or join) the bench's own embedded servers; the env children need to share them."""
    os.environ["VAR_DIR"] = str(var_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportdesk.settings")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "true"  # load_demo indexes in this process
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings

    db = settings.DATABASES["default"]
    host = db.get("OPTIONS", {}).get("host") or db.get("HOST")
    url = (f"postgresql://{db['USER']}:@/{db['NAME']}?host={host}" if str(host).startswith("/")
           else f"postgresql://{db['USER']}:{db['PASSWORD']}@{host}:{db['PORT'] or 5432}/{db['NAME']}")
    return {**os.environ, "DATABASE_URL": url, "REDIS_URL": settings.REDIS_URL, "SECRET_KEY": settings.SECRET_KEY,
            "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "ERROR"}


# --- the load ----------------------------------------------------------------------------


@dataclass
class Results:
    sent: int = 0
    received: int = 0
    handed_over: int = 0  # saved, and rightly not answered by the bot: a human owns the chat
    errors: list[str] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    full_ms: list[float] = field(default_factory=list)


def make_token(base: str) -> str:
    request = urllib.request.Request(f"{base}/api/sessions", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["token"]


async def client(session, base: str, token: str | None, number: int, messages: int, results: Results) -> None:
    headers = {"Origin": base, **({"Cookie": f"sd_chat={token}"} if token else {})}
    ws_url = base.replace("http://", "ws://") + "/ws/chat/"
    try:
        async with session.ws_connect(ws_url, headers=headers, timeout=30, max_msg_size=0) as ws:
            human = [False]
            for m in range(messages):
                question = QUESTIONS[(number + m) % len(QUESTIONS)]
                # The fake LLM's reply text and pace are set when it starts (see main): the
                # question stays what a customer types.
                await exchange(ws, {"action": "message", "content": question, "client_message_id": f"b{number}-{m}"},
                               results, human)
    except Exception as error:  # noqa: BLE001 - counted, reported, never hidden
        results.errors.append(f"client {number}: {type(error).__name__}: {error}"[:200])


async def exchange(ws, frame: dict, results: Results, human: list[bool], timeout: float = 120) -> None:
    sent_at = time.perf_counter()
    await ws.send_str(json.dumps(frame))
    results.sent += 1
    first = None
    async with asyncio.timeout(timeout):
        while True:
            message = await ws.receive()
            if message.type.name != "TEXT":
                raise ConnectionError(f"socket {message.type.name} {message.data} {message.extra}")
            now = time.perf_counter()
            human[0] = human[0] or bool(HANDED_OVER.search(message.data))
            if human[0] and ACK.format(frame["client_message_id"]) in message.data:
                results.handed_over += 1
                return
            if first is None and TOKEN.search(message.data):
                first = now
            match = COMPLETE.search(message.data)
            if os.environ.get("BENCH_DEBUG"):
                print(round(1000 * (now - sent_at)), message.data[:300].replace("\n", " "), flush=True)
            if match:
                if match.group(1) != "complete":
                    results.errors.append("reply interrupted")
                results.received += 1
                results.ttft_ms.append(1000 * ((first or now) - sent_at))
                results.full_ms.append(1000 * (now - sent_at))
                return


async def run_load(base: str, tokens: list[str | None], messages: int) -> tuple[Results, float]:
    import aiohttp

    results = Results()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session, base, token, i, messages, results)
                               for i, token in enumerate(tokens)))
        return results, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


class RssSampler:
    """Peak resident memory of the server process while the load runs."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.peak = 0
        self.task: asyncio.Task | None = None

    async def _loop(self) -> None:
        while True:
            self.peak = max(self.peak, self.process.memory_info().rss)
            await asyncio.sleep(0.2)

    def __enter__(self) -> "RssSampler":
        self.task = asyncio.get_running_loop().create_task(self._loop())
        return self

    def __exit__(self, *exc: object) -> None:
        self.task.cancel()  # type: ignore[union-attr]


async def measure(base: str, tokens: list[str | None], messages: int, pid: int):
    with RssSampler(pid) as rss:
        results, seconds = await run_load(base, tokens, messages)
    return results, seconds, rss.peak / 1024 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--messages", type=int, default=2)
    parser.add_argument("--token-delay", type=float, default=0.02, help="seconds between streamed tokens")
    parser.add_argument("--var-dir", default=str(ROOT / "var" / "bench-chat"))
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()

    env = setup_django(Path(args.var_dir))
    from django.core.management import call_command

    print("• migrating the bench database and loading the demo help centre", flush=True)
    call_command("migrate", interactive=False, verbosity=0)
    call_command("load_demo")  # real retrieval; an empty knowledge base would escalate every chat
    fake_port, app_port, echo_port = free_port(), free_port(), free_port()
    app_env = {**env, "LLM_MODEL": "openai/fake-model", "LLM_API_BASE": f"http://127.0.0.1:{fake_port}/v1",
               "LLM_API_KEY": "bench", "RATE_LIMIT_MESSAGES": "1000000/m", "RATE_LIMIT_SESSIONS": "1000000/h",
               "BENCH_TOKEN_DELAY": str(args.token_delay)}
    processes = []
    try:
        processes.append(start([sys.executable, "-m", "agent.fake_llm", "--port", str(fake_port), "--text",
                                reply_text(REPLY_WORDS), "--token-delay", str(args.token_delay)], env, fake_port))
        app = start([sys.executable, "-c", APP_SERVER, str(app_port)], app_env, app_port)
        processes.append(app)
        echo = start([sys.executable, "-c", ECHO_SERVER, str(echo_port)], app_env, echo_port)
        processes.append(echo)
        report = asyncio.run(run(args, f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{echo_port}", app.pid, echo.pid))
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
    print_report(report)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))


def wait_for_model(base: str, timeout: float = 300) -> None:
    """Until /readyz says the embedding model is loaded: it loads on a thread at start-up,
    and a load phase that overlaps it measures seconds of imports, not the chat."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=30) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:  # 503 while some component (Celery: none here) is down
            body = json.loads(error.read())
        if body["components"]["embedding_model"]["ok"]:
            return
        time.sleep(0.5)
    raise SystemExit("the app never loaded its embedding model")


async def run(args: argparse.Namespace, base: str, echo_base: str, app_pid: int, echo_pid: int) -> dict:
    print("• waiting for the app to load its embedding model", flush=True)
    await asyncio.to_thread(wait_for_model, base)
    print("• warming up the app (first reply)", flush=True)
    warm, _ = await run_load(base, [await asyncio.to_thread(make_token, base)], 1)
    print(f"• opening {args.clients} sessions", flush=True)
    tokens = [await asyncio.to_thread(make_token, base) for _ in range(args.clients)]
    print(f"• load: {args.clients} clients × {args.messages} messages (chat)", flush=True)
    ours, our_s, rss_mb = await measure(base, tokens, args.messages, app_pid)
    print("• the same load against the bare echo consumer", flush=True)
    echo, echo_s, _ = await measure(echo_base, [None] * args.clients, args.messages, echo_pid)
    our_rate, echo_rate = ours.received / our_s, echo.received / echo_s
    return {"clients": args.clients, "messages_sent": ours.sent, "replies_received": ours.received,
            "lost": ours.sent - ours.received - ours.handed_over, "handed_over_to_human": ours.handed_over,
            "errors": len(ours.errors) + len(warm.errors),
            "ttft_ms": {"p50": percentile(ours.ttft_ms, 0.5), "p95": percentile(ours.ttft_ms, 0.95)},
            "full_reply_ms": {"p50": percentile(ours.full_ms, 0.5), "p95": percentile(ours.full_ms, 0.95)},
            "echo_ratio": round(our_rate / echo_rate, 3) if echo_rate else 0.0, "rss_mb": round(rss_mb, 1),
            "messages_per_s": round(our_rate, 1), "echo_messages_per_s": round(echo_rate, 1),
            "echo_ttft_ms": {"p50": percentile(echo.ttft_ms, 0.5), "p95": percentile(echo.ttft_ms, 0.95)},
            "echo_errors": len(echo.errors), "token_delay_s": args.token_delay, "reply_words": REPLY_WORDS,
            "error_samples": (warm.errors + ours.errors)[:5]}


def print_report(report: dict) -> None:
    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    print(f"\nclients {report['clients']}, messages sent {report['messages_sent']}, "
          f"replies received {report['replies_received']}")
    print(f"handed to a human (no bot reply, by design) {report['handed_over_to_human']}")
    print(f"lost        {report['lost']:>8}   target {TARGETS['lost']}   {verdict(report['lost'] == 0)}")
    print(f"errors      {report['errors']:>8}   target {TARGETS['errors']}   {verdict(report['errors'] == 0)}")
    print(f"TTFT        p50 {report['ttft_ms']['p50']} ms, p95 {report['ttft_ms']['p95']} ms "
          f"(echo p50 {report['echo_ttft_ms']['p50']} ms)")
    print(f"full reply  p50 {report['full_reply_ms']['p50']} ms, p95 {report['full_reply_ms']['p95']} ms")
    print(f"echo_ratio  {report['echo_ratio']:>8}   target >= {TARGETS['echo_ratio']}   "
          f"{verdict(report['echo_ratio'] >= TARGETS['echo_ratio'])}  "
          f"({report['messages_per_s']} vs {report['echo_messages_per_s']} messages/s)")
    print(f"server RSS  {report['rss_mb']} MB (peak)")
    for sample in report["error_samples"]:
        print("  error:", sample)


# Both servers start through this bootstrap: Django set up, Daphne's command line ready.
BOOTSTRAP = f"""
import os, sys
sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'bench')!r})
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportdesk.settings")
import django; django.setup()
from daphne.cli import CommandLineInterface
"""
APP_SERVER = BOOTSTRAP + """
CommandLineInterface().run(["-v", "0", "-b", "127.0.0.1", "-p", sys.argv[1], "supportdesk.asgi:application"])
"""
# The echo server: Daphne serving echo_application() with Django configured (Channels needs settings).
ECHO_SERVER = BOOTSTRAP + """
import chat_load
application = chat_load.echo_application()
sys.modules["__bench_echo__"] = type(sys)("__bench_echo__"); sys.modules["__bench_echo__"].application = application
CommandLineInterface().run(["-v", "0", "-b", "127.0.0.1", "-p", sys.argv[1], "__bench_echo__:application"])
"""


if __name__ == "__main__":
    main()
