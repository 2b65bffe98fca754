"""A local, OpenAI-compatible fake LLM provider for tests and benchmarks.

It speaks just enough of the OpenAI chat-completions protocol (streaming SSE and
plain JSON) that litellm's real client code runs end to end against it, and it
can misbehave on purpose: HTTP errors, stalls, keepalive-only stalls, malformed
chunks, tool calls.

How a request's behaviour is chosen (first match wins):

1. A magic marker in the last user message, e.g. ``[[fake:stall]]``.  Browser
   and load tests, which cannot call :meth:`FakeLLM.script`, steer it this way.
   Markers (case-sensitive, several may appear; the first *kind* marker wins):

   ``[[fake:echo]]``                      reply "You said: <message>"
   ``[[fake:text:Any reply text]]``       stream that exact text
   ``[[fake:error:500]]``                 HTTP error with that status (429, 401...)
   ``[[fake:stall]]`` / ``[[fake:stall:2:30]]``   stall after 2 tokens for 30 s
   ``[[fake:keepalive_stall]]`` (same optional ``:after:seconds``) stall while
                                          sending ``: keepalive`` SSE comments
   ``[[fake:malformed]]``                 good chunks, then invalid JSON
   ``[[fake:truncated]]``                 good chunks, then [DONE] with no
                                          finish_reason (a proxy cutting it short)
   ``[[fake:tool:order_status:{"order_id":"1001"}]]``  stream a tool call
   ``[[fake:delay:0.05]]``                modifier: seconds between tokens,
                                          applied on top of whatever was chosen
   Markers are stripped from the text that "echo" repeats.

2. The model name the client sent (litellm strips its ``openai/`` prefix, so
   ``openai/fake-broken`` arrives as ``fake-broken``), so fallback chains can be
   tested without scripting:

   ``fake-broken*``          always HTTP 500
   ``fake-error-<status>*``  always that HTTP status, e.g. ``fake-error-429``
   ``fake-stall*``           always stalls (``Behaviour`` stall defaults)
   ``fake-keepalive-stall*`` always stalls behind keepalive comments
   ``fake-malformed*``       always a malformed stream
   ``fake-truncated*``       always a truncated stream
   Any other model name falls through.

3. The scripted queue (:meth:`FakeLLM.script`), one behaviour per request.
4. :attr:`FakeLLM.default` (echo unless changed).

Run standalone: ``python -m agent.fake_llm --port 8099`` then point
``LLM_API_BASE=http://127.0.0.1:8099/v1`` and ``LLM_MODEL=openai/fake-model``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KINDS = frozenset(
    {"text", "echo", "tool_call", "error", "stall", "malformed", "keepalive_stall", "truncated"}
)
_MARKER = re.compile(r"\[\[fake:(.*?)\]\]", re.DOTALL)
_TOKEN = re.compile(r"\s*\S+")
_KEEPALIVE_EVERY_S = 0.2
_WATCH_EVERY_S = 0.05
# A truncated JSON object: what a proxy or a buggy server sends when it breaks mid-stream.
_MALFORMED_EVENT = b'data: {"id": "broken", "object": "chat.completion.chunk", "choices": [{"delta": \n\n'


@dataclass
class Behaviour:
    """What the fake provider does for one request (see module docstring)."""

    kind: str = "echo"
    text: str = ""
    tool_name: str = ""
    tool_args: dict = field(default_factory=dict)
    status: int = 500
    stall_after: int = 2  # also: good tokens before a "malformed"/"truncated" stream breaks
    stall_seconds: float = 30
    token_delay: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fake behaviour kind {self.kind!r}; expected one of {sorted(KINDS)}")


class _ClientGone(Exception):
    """The client hung up mid-response."""


class _Stopping(Exception):
    """The server is stopping: abandon the response (not a client disconnect)."""


# --- behaviour selection -------------------------------------------------------


def _content_text(content: Any) -> str:
    """Flatten OpenAI message content (str or list of parts) to plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def last_user_text(body: dict) -> str:
    """Text of the last user message in a chat request body ("" if none)."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _parse_marker(spec: str) -> Behaviour | None:
    """Turn the inside of one ``[[fake:...]]`` marker into a Behaviour."""
    kind, _, rest = spec.partition(":")
    if kind == "tool":
        name, _, raw_args = rest.partition(":")
        return Behaviour(kind="tool_call", tool_name=name, tool_args=json.loads(raw_args or "{}"))
    if kind == "text":
        return Behaviour(kind="text", text=rest)
    if kind == "error":
        return Behaviour(kind="error", status=int(rest or 500))
    if kind in ("stall", "keepalive_stall"):
        args = [a for a in rest.split(":") if a]
        after = int(args[0]) if args else 2
        seconds = float(args[1]) if len(args) > 1 else 30.0
        return Behaviour(kind=kind, stall_after=after, stall_seconds=seconds)
    if kind in ("echo", "malformed", "truncated"):
        return Behaviour(kind=kind)
    return None


def _from_markers(text: str) -> tuple[Behaviour | None, float | None]:
    """The first kind marker and the delay modifier found in ``text``."""
    chosen: Behaviour | None = None
    delay: float | None = None
    for spec in _MARKER.findall(text):
        if spec.startswith("delay:"):
            delay = float(spec.split(":", 1)[1])
        elif chosen is None:
            chosen = _parse_marker(spec)
    return chosen, delay


def _from_model(model: str) -> Behaviour | None:
    """Behaviour forced by a ``fake-<kind>`` model name, if any."""
    name = model.rsplit("/", 1)[-1]
    if name.startswith("fake-broken"):
        return Behaviour(kind="error", status=500)
    match = re.match(r"fake-error-(\d{3})", name)
    if match:
        return Behaviour(kind="error", status=int(match.group(1)))
    if name.startswith("fake-keepalive-stall"):
        return Behaviour(kind="keepalive_stall")
    if name.startswith("fake-stall"):
        return Behaviour(kind="stall")
    if name.startswith("fake-malformed"):
        return Behaviour(kind="malformed")
    if name.startswith("fake-truncated"):
        return Behaviour(kind="truncated")
    return None


def reply_text(behaviour: Behaviour, body: dict) -> str:
    """The assistant text a text-ish behaviour streams for this request."""
    if behaviour.kind == "text" or (behaviour.text and behaviour.kind != "echo"):
        return behaviour.text
    said = _MARKER.sub("", last_user_text(body)).strip()
    return f"You said: {said}" if said else "You said nothing."


def split_tokens(text: str) -> list[str]:
    """Split text into word-ish tokens that concatenate back to the original."""
    tokens = _TOKEN.findall(text)
    tail = text[len("".join(tokens)) :]
    if tail and tokens:
        tokens[-1] += tail
    return tokens or ([text] if text else [])


def crude_prompt_tokens(body: dict) -> int:
    """A rough prompt token count (words), used when none is scripted."""
    messages = body.get("messages") or []
    return sum(len(_content_text(m.get("content")).split()) + 3 for m in messages if isinstance(m, dict))


# --- OpenAI wire shapes ----------------------------------------------------------


def _chunk(rid: str, model: str, delta: dict, finish: str | None = None) -> dict:
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _error_body(status: int) -> dict:
    """An error body shaped like OpenAI's, so litellm maps it to the same exception class."""
    known = {
        401: ("Incorrect API key provided (fake provider).", "invalid_request_error", "invalid_api_key"),
        429: ("Rate limit reached (fake provider).", "requests", "rate_limit_exceeded"),
    }
    message, kind, code = known.get(status, (f"fake provider error {status}", "server_error", str(status)))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _tool_arg_pieces(args: dict) -> list[str]:
    raw = json.dumps(args)
    step = max(1, len(raw) // 3)
    return [raw[i : i + step] for i in range(0, len(raw), step)]


# --- HTTP ----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive + chunked streaming, like real providers
    # TCP_NODELAY, as real providers' servers set it: otherwise each small SSE write waits for
    # the client's delayed ACK (~40 ms) and the fake, not the agent, dominates time to first token.
    disable_nagle_algorithm = True
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.fake.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._send_json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
        else:
            self._send_json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})
            return
        body = self._read_body()
        if body is None:
            return
        fake = self.server.fake
        fake._record(body)
        try:
            behaviour = fake._choose(body)
        except ValueError as exc:  # e.g. a [[fake:tool:...]] marker with bad JSON
            self._send_json(400, {"error": {"message": f"bad fake marker: {exc}"}})
            return
        try:
            _Responder(self, body, behaviour).respond()
        except (_ClientGone, BrokenPipeError, ConnectionResetError):
            fake._note_disconnect()
            self.close_connection = True
        except _Stopping:
            self.close_connection = True

    def _read_body(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._send_json(400, {"error": {"message": "request body must be a JSON object"}})
            return None
        return body

    def _send_json(self, status: int, payload: Any, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Responder:
    """Plays one Behaviour for one request, streaming or not."""

    def __init__(self, handler: _Handler, body: dict, behaviour: Behaviour) -> None:
        self.h = handler
        self.body = body
        self.b = behaviour
        self.model = str(body.get("model") or "fake-model")
        self.rid = f"chatcmpl-fake-{next(_ids)}"
        self.stream = bool(body.get("stream"))
        self.sent_tokens = 0

    def respond(self) -> None:
        """Dispatch on the behaviour kind."""
        if self.b.kind == "error":
            self.h._send_json(self.b.status, _error_body(self.b.status))
        elif self.stream:
            self._stream()
        else:
            self._plain()

    # -- streaming --

    def _stream(self) -> None:
        self.h.send_response(200)
        self.h.send_header("Content-Type", "text/event-stream")
        self.h.send_header("Cache-Control", "no-cache")
        self.h.send_header("Transfer-Encoding", "chunked")
        self.h.end_headers()
        self._event(_chunk(self.rid, self.model, {"role": "assistant", "content": ""}))
        if self.b.kind == "tool_call":
            self._stream_tool_call()
        else:
            self._stream_text()
        self._write(b"data: [DONE]\n\n")
        self._write(b"")  # zero-length chunk terminates the chunked body

    def _stream_text(self) -> None:
        tokens = split_tokens(reply_text(self.b, self.body))
        cut = min(self.b.stall_after, len(tokens))
        for token in tokens[:cut]:
            self._token({"content": token})
        if self.b.kind == "malformed":
            self._alive()
            self._write(_MALFORMED_EVENT)
            return  # the stream is beyond repair after that; just end it
        if self.b.kind == "truncated":
            return  # [DONE] without a finish_reason or usage
        if self.b.kind in ("stall", "keepalive_stall"):
            self._stall()
        for token in tokens[cut:]:
            self._token({"content": token})
        self._finish("stop")

    def _stream_tool_call(self) -> None:
        call_id = f"call_fake_{next(_ids)}"
        self._token({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                     "function": {"name": self.b.tool_name, "arguments": ""}}]})
        for piece in _tool_arg_pieces(self.b.tool_args):
            self._token({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        self._finish("tool_calls")

    def _token(self, delta: dict) -> None:
        if self.b.token_delay and self.sent_tokens:
            self._wait(self.b.token_delay)
        self._alive()
        self._event(_chunk(self.rid, self.model, delta))
        self.sent_tokens += 1

    def _finish(self, reason: str) -> None:
        self._event(_chunk(self.rid, self.model, {}, reason))
        if (self.body.get("stream_options") or {}).get("include_usage"):
            usage_chunk = _chunk(self.rid, self.model, {})
            usage_chunk["choices"] = []
            usage_chunk["usage"] = self._usage()
            self._event(usage_chunk)

    def _usage(self) -> dict:
        prompt = self.b.prompt_tokens or crude_prompt_tokens(self.body)
        return _usage(prompt, self.b.completion_tokens or self.sent_tokens)

    def _stall(self) -> None:
        if self.b.kind == "stall":
            self._wait(self.b.stall_seconds)
            return
        deadline = time.monotonic() + self.b.stall_seconds
        while time.monotonic() < deadline:
            self._write(b": keepalive\n\n")
            self._wait(min(_KEEPALIVE_EVERY_S, max(0.0, deadline - time.monotonic())))

    def _event(self, payload: dict) -> None:
        self._write(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _write(self, data: bytes) -> None:
        self.h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.h.wfile.flush()

    # -- liveness --

    def _wait(self, seconds: float) -> None:
        """Sleep, but notice promptly if the client hangs up or we are stopping."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._alive()
            time.sleep(min(_WATCH_EVERY_S, left))
        self._alive()

    def _alive(self) -> None:
        if self.h.server.fake._stopping.is_set():
            raise _Stopping
        if _peer_closed(self.h.connection):
            raise _ClientGone

    # -- non-streaming --

    def _plain(self) -> None:
        if self.b.kind in ("stall", "keepalive_stall"):
            self._wait(self.b.stall_seconds)
        if self.b.kind in ("malformed", "truncated"):
            self.h._send_json(200, None, raw=b'{"id": "broken", "choices": [')
            return
        message: dict[str, Any] = {"role": "assistant", "content": None}
        finish = "tool_calls"
        if self.b.kind == "tool_call":
            message["tool_calls"] = [{"id": f"call_fake_{next(_ids)}", "type": "function",
                                      "function": {"name": self.b.tool_name,
                                                   "arguments": json.dumps(self.b.tool_args)}}]
        else:
            message["content"] = reply_text(self.b, self.body)
            self.sent_tokens = len(split_tokens(message["content"]))
            finish = "stop"
        self.h._send_json(200, {
            "id": self.rid, "object": "chat.completion", "created": int(time.time()), "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": self._usage(),
        })


def _peer_closed(sock: socket.socket) -> bool:
    """True if the client closed its end (readable with EOF, or reset)."""
    poller = select.poll()  # poll, not select: no FD_SETSIZE limit under load
    poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
    if not poller.poll(0):
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


_ids = itertools.count(1)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # listen backlog: a load benchmark opens ~200 at once
    fake: "FakeLLM"


# --- public API ------------------------------------------------------------------------


class FakeLLM:
    """A threaded local OpenAI-compatible server; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False) -> None:
        self.host = host
        self.port = port
        self.verbose = verbose
        self.default = Behaviour()
        self.requests: list[dict] = []
        self._queue: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._disconnected = threading.Condition(self._lock)
        self._disconnects = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def disconnects(self) -> int:
        """How many responses were cut short because the client hung up."""
        with self._lock:
            return self._disconnects

    @property
    def models(self) -> list[str]:
        """The model name of every request received, in order."""
        with self._lock:
            return [str(r.get("model")) for r in self.requests]

    def start(self) -> "FakeLLM":
        """Bind and serve in a daemon thread; returns self."""
        self._stopping.clear()
        self._server = _Server((self.host, self.port), _Handler)
        self._server.fake = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="fake-llm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; in-flight stalls abort and hang up."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "FakeLLM":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours, consumed one per request (after markers/model routes)."""
        with self._lock:
            self._queue.extend(behaviours)

    def reset(self) -> None:
        """Forget recorded requests, disconnects and any queued behaviours."""
        with self._lock:
            self.requests.clear()
            self._queue.clear()
            self._disconnects = 0
            self.default = Behaviour()

    def wait_for_disconnects(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` client disconnects were seen."""
        with self._disconnected:
            return self._disconnected.wait_for(lambda: self._disconnects >= count, timeout)

    # -- used by the handler --

    def _record(self, body: dict) -> None:
        with self._lock:
            self.requests.append(body)

    def _note_disconnect(self) -> None:
        with self._disconnected:
            self._disconnects += 1
            self._disconnected.notify_all()

    def _choose(self, body: dict) -> Behaviour:
        marked, delay = _from_markers(last_user_text(body))
        chosen = marked or _from_model(str(body.get("model") or ""))
        if chosen is None:
            with self._lock:
                chosen = self._queue.popleft() if self._queue else self.default
        return replace(chosen, token_delay=delay) if delay is not None else chosen


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the fake OpenAI-compatible LLM provider.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--token-delay", type=float, default=0.0, help="default seconds between tokens")
    parser.add_argument("--text", default="", help="reply with this text (default: echo the last user message)")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    fake = FakeLLM(args.host, args.port, verbose=args.verbose)
    fake.default = Behaviour(kind="text" if args.text else "echo", text=args.text, token_delay=args.token_delay)
    fake.start()
    print(f"fake LLM listening on {fake.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    _main()
