"""Streaming LLM generation through litellm, with our own safety net.

litellm talks to every provider; on top of it this module adds what a support
agent needs and litellm does not reliably give us:

* our own silence timeouts (keepalive bytes defeat httpx read timeouts, and a
  chunk with no content must not count as progress);
* failover along ``LLMConfig.fallback_models`` on errors, stalls, malformed or
  truncated streams — including after tokens were emitted (see FailoverEvent);
* prompt closing of the HTTP stream on timeout, failure or cancellation;
* usage and cost that never raise, from litellm's *local* price map.

No Django here: callers build an :class:`LLMConfig` from settings.
"""

from __future__ import annotations

import os

# Must happen before litellm is imported: otherwise it fetches price / header
# maps from GitHub at import time, and we run offline and self-hosted.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS"] = "True"
os.environ["LITELLM_LOCAL_BLOG_POSTS"] = "True"
os.environ["LITELLM_LOCAL_POLICY_TEMPLATES"] = "True"

import asyncio  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import uuid  # noqa: E402
from contextlib import aclosing  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, AsyncGenerator  # noqa: E402

import litellm  # noqa: E402

logger = logging.getLogger(__name__)

# Nothing may leave the box except the request to the configured provider.
litellm.telemetry = False
litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banners on stdout
litellm.disable_hf_tokenizer_download = True  # token counting must not hit huggingface.co
litellm.turn_off_message_logging = True  # keep customer text (PII) out of litellm's log objects
litellm.success_callback = []
litellm.failure_callback = []
litellm.callbacks = []


def _skip_openai_config_protocol_check() -> None:
    """Spare the OpenAI SDK a slow isinstance on every streamed chunk.

    Its model construction asks whether each class's pydantic config is a v1 config
    object, against a runtime-checkable Protocol; typing_extensions answers that by
    walking the MRO statically. Under chat load that check was 17% of the server's GIL
    time (py-spy). With pydantic v2 the config is a plain dict and the answer is always
    no, so a class nothing is an instance of gives the same answer at once (28% less
    time per chunk). With pydantic v1, or an SDK without the check, nothing changes.
    """
    try:
        import openai._compat as compat
        import openai._models as models
    except ImportError:
        return
    if not getattr(compat, "PYDANTIC_V1", True) and hasattr(models, "_ConfigProtocol"):
        models._ConfigProtocol = type("_NoPydanticV1Config", (), {})


_skip_openai_config_protocol_check()

_JSON_SCALARS = (str, int, float, bool, type(None))


def _plain_json(value: Any) -> bool:
    """Only dicts with string keys, lists and JSON scalars: nothing a transform would rewrite."""
    if isinstance(value, _JSON_SCALARS):
        return True
    if isinstance(value, list):
        return all(_plain_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _plain_json(item) for key, item in value.items())
    return False


def _has_aliases(annotation: Any, seen: set[int] | None = None) -> bool:
    """Whether any field under this request type is sent under another name (PropertyInfo alias)."""
    import typing

    from openai._utils._transform import PropertyInfo

    seen = set() if seen is None else seen
    if id(annotation) in seen:
        return False
    seen.add(id(annotation))
    if any(isinstance(meta, PropertyInfo) and meta.alias for meta in getattr(annotation, "__metadata__", ())):
        return True
    if typing.is_typeddict(annotation):
        return any(_has_aliases(hint, seen) for hint in typing.get_type_hints(annotation, include_extras=True).values())
    return any(_has_aliases(arg, seen) for arg in typing.get_args(annotation))


def _skip_openai_identity_transform() -> None:
    """Spare the OpenAI SDK its request transform when it would return the request unchanged.

    Before each request the SDK walks the body against its TypedDicts, field by field, to
    rename aliased keys and encode dates and files: about 2 ms for a prompt of nine messages,
    on the path to the first token. Our bodies are plain JSON (strings, numbers, lists,
    dicts), for which the walk only drops the parameters left unset, and the chat request
    types have no aliases (checked here, against the installed SDK). Anything else, or an
    SDK whose types gained an alias, goes through the SDK's own transform.
    """
    try:
        from openai._utils._utils import is_given
        from openai.resources.chat.completions import completions
        from openai.types.chat import completion_create_params as params
        identity = {kind for kind in (params.CompletionCreateParamsStreaming,
                                      params.CompletionCreateParamsNonStreaming) if not _has_aliases(kind)}
    except Exception:  # another SDK layout: leave it alone
        return
    transform = completions.async_maybe_transform

    async def transform_unless_plain(data: Any, expected_type: Any) -> Any:
        if expected_type in identity and isinstance(data, dict):
            given = {key: value for key, value in data.items() if is_given(value)}
            if _plain_json(given):
                return given
        return await transform(data, expected_type)

    completions.async_maybe_transform = transform_unless_plain


_skip_openai_identity_transform()

DEFAULT_CONTEXT_WINDOW = 8192
_CLOSE_TIMEOUT_S = 2.0
_ERROR_TEXT_MAX = 300
_MISSING = object()
_IMAGE_PART_CHARS = 4 * 1024  # crude count of one image: ~1k tokens, like a high-detail tile or two


@dataclass(frozen=True)
class LLMConfig:
    """Everything needed to call the model chain; built by the caller from settings.

    ``api_base`` / ``api_key`` are sent to the primary model and to any fallback
    with the same provider prefix (``openai/`` ...); fallbacks on another provider
    use litellm's usual environment variables (e.g. ``ANTHROPIC_API_KEY``).
    ``timeout_s`` bounds each model attempt as a whole.
    """

    model: str
    fallback_models: tuple[str, ...] = ()
    api_base: str | None = None
    api_key: str | None = None
    timeout_s: float = 30.0
    chunk_timeout_s: float = 10.0
    first_chunk_timeout_s: float = 20.0
    max_tokens: int = 800
    temperature: float = 0.2


@dataclass
class Usage:
    """Token usage of one successful generation and its cost (0.0 when unpriced)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class ToolCallRequest:
    """A tool call the model asked for; ``error`` is set if its arguments were not a JSON object."""

    id: str
    name: str
    arguments: dict
    error: str | None = None


@dataclass
class TokenEvent:
    """A piece of assistant text, in order."""

    text: str


@dataclass
class DoneEvent:
    """The generation finished; always the last event of a successful stream."""

    model: str
    usage: Usage
    tool_calls: list[ToolCallRequest]
    finish_reason: str


@dataclass
class FailoverEvent:
    """``model`` failed with ``error``; ``next_model`` is tried now.

    If ``restarted`` is True the failed model had already emitted TokenEvents:
    the caller must discard that partial text, the next model starts over.
    """

    model: str
    error: str
    restarted: bool = False
    next_model: str = ""


class LLMUnavailable(Exception):
    """Every model in the chain failed (or none is configured)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = list(errors)
        detail = "; ".join(f"{model or '<none>'}: {error}" for model, error in self.errors)
        super().__init__(f"no LLM could answer ({detail})")


class _StreamFailure(Exception):
    """Our own verdict on a stream litellm considered fine (silence, truncation)."""


# --- streaming ---------------------------------------------------------------------


async def stream_chat(
    config: LLMConfig, messages: list[dict], *, tools: list[dict] | None = None
) -> AsyncGenerator[TokenEvent | FailoverEvent | DoneEvent, None]:
    """Stream a chat completion, failing over along the model chain.

    Yields TokenEvents, then exactly one DoneEvent; FailoverEvents in between
    when a model fails and the next is tried. Raises LLMUnavailable when all
    fail. Stop iterating (or cancel) at any time: the HTTP stream is closed.
    Prefer ``async with contextlib.aclosing(stream_chat(...))`` so an early
    ``break`` closes it immediately rather than when the generator is collected.
    """
    chain = _model_chain(config)
    if not chain:
        raise LLMUnavailable([("", "no LLM model configured")])
    errors: list[tuple[str, str]] = []
    for position, model in enumerate(chain):
        attempt = _Attempt(model)
        try:
            async with aclosing(_stream_model(config, attempt, messages, tools)) as events:
                async for event in events:
                    yield event
            return
        except Exception as exc:  # any provider/stream failure means "try the next model"
            error = _describe(exc)
            errors.append((model, error))
            logger.warning("llm model %s failed: %s", model, error, extra={"model": model, "error": error})
            if position + 1 < len(chain):
                yield FailoverEvent(model, error, restarted=attempt.emitted, next_model=chain[position + 1])
    raise LLMUnavailable(errors)


def _model_chain(config: LLMConfig) -> list[str]:
    chain: list[str] = []
    for model in (config.model, *config.fallback_models):
        if model and model.strip() and model.strip() not in chain:
            chain.append(model.strip())
    return chain


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or repr(exc)
    return f"{type(exc).__name__}: {text[:_ERROR_TEXT_MAX]}"


async def _stream_model(
    config: LLMConfig, attempt: "_Attempt", messages: list[dict], tools: list[dict] | None
) -> AsyncGenerator[TokenEvent | DoneEvent, None]:
    """One model, start to finish; raises on any failure."""
    clock = _Clock(config)
    stream = await clock.wait(litellm.acompletion(**_request_kwargs(config, attempt.model, messages, tools)))
    try:
        async with aclosing(_paced(stream, clock)) as chunks:
            async for chunk in chunks:
                for event in attempt.absorb(chunk):
                    yield event
        _check_finished(stream)
    finally:
        await _close(stream)
    # Closed before DoneEvent: a consumer that stops right after it leaks nothing.
    yield attempt.done(messages)


def _request_kwargs(config: LLMConfig, model: str, messages: list[dict], tools: list[dict] | None) -> dict:
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "timeout": config.timeout_s,
        "max_tokens": config.max_tokens,
        "temperature": config.temperature,
        "num_retries": 0,  # retries are our failover's job, not litellm's
        "max_retries": 0,  # belt and braces: the OpenAI SDK alone retries 429/5xx twice
        "drop_params": True,  # e.g. temperature on models that reject it
    }
    if _provider(model) == _provider(config.model):
        kwargs.update({k: v for k, v in (("api_base", config.api_base), ("api_key", config.api_key)) if v})
    if tools:
        kwargs["tools"] = tools
    return kwargs


def _provider(model: str) -> str:
    return model.split("/", 1)[0] if "/" in model else ""


class _Clock:
    """Deadlines of one attempt: first content, silence since last content, overall.

    Silence counts only time spent waiting on the provider: while the consumer
    is busy (a slow websocket), chunks buffer up and that is not the model's fault.
    """

    def __init__(self, config: LLMConfig) -> None:
        self.loop = asyncio.get_running_loop()
        self.config = config
        self.overall = self.loop.time() + config.timeout_s
        self.budget = config.first_chunk_timeout_s
        self.silent_for = 0.0
        self.seen_content = False

    async def wait(self, awaitable: Any) -> Any:
        """Await the provider, raising _StreamFailure when a deadline passes."""
        started = self.loop.time()
        remaining = min(self.budget - self.silent_for, self.overall - started)
        try:
            return await asyncio.wait_for(awaitable, timeout=max(0.0, remaining))
        except TimeoutError:  # asyncio.TimeoutError is TimeoutError since 3.11
            raise self._timeout_error() from None
        finally:
            self.silent_for += self.loop.time() - started

    def progressed(self) -> None:
        """A content-bearing chunk arrived: restart the silence budget."""
        self.seen_content = True
        self.budget = self.config.chunk_timeout_s
        self.silent_for = 0.0

    def _timeout_error(self) -> _StreamFailure:
        if self.loop.time() >= self.overall:
            return _StreamFailure(f"no complete answer within {self.config.timeout_s}s")
        if not self.seen_content:
            return _StreamFailure(f"no content within {self.config.first_chunk_timeout_s}s")
        return _StreamFailure(f"stream silent for more than {self.config.chunk_timeout_s}s")


async def _paced(stream: Any, clock: _Clock) -> AsyncGenerator[Any, None]:
    """Yield chunks, enforcing our deadlines on every ``__anext__``.

    Only content-bearing chunks restart the silence budget, so keepalive
    comments or empty deltas cannot keep a dead stream alive.
    """
    iterator = stream.__aiter__()
    while True:
        try:
            chunk = await clock.wait(iterator.__anext__())
        except StopAsyncIteration:
            return
        if _has_progress(chunk):
            clock.progressed()
        yield chunk


def _has_progress(chunk: Any) -> bool:
    if getattr(chunk, "usage", None):
        return True
    for choice in getattr(chunk, "choices", None) or []:
        delta = getattr(choice, "delta", None)
        if getattr(choice, "finish_reason", None) or _delta_has_content(delta):
            return True
    return False


def _delta_has_content(delta: Any) -> bool:
    # Reasoning tokens are real progress (thinking models are silent otherwise).
    fields = ("content", "tool_calls", "reasoning_content")
    return delta is not None and any(getattr(delta, name, None) for name in fields)


def _check_finished(stream: Any) -> None:
    """Reject a stream that ended without the provider ever saying it finished.

    litellm synthesizes finish_reason "stop" for a stream cut short (e.g. a
    proxy closing the connection), so ask the wrapper what it really received.
    """
    received = getattr(stream, "received_finish_reason", _MISSING)
    if received is _MISSING:
        return  # not litellm's CustomStreamWrapper: nothing to go on
    if received is None and getattr(stream, "intermittent_finish_reason", None) is None:
        raise _StreamFailure("stream ended without a finish_reason (truncated)")


async def _close(stream: Any) -> None:
    """Close the HTTP stream without letting cleanup errors mask the real outcome."""
    closer = getattr(stream, "aclose", None)
    if closer is None:
        return
    try:
        await asyncio.wait_for(closer(), timeout=_CLOSE_TIMEOUT_S)
    except Exception as exc:  # best-effort: the attempt's own result matters more
        logger.debug("closing llm stream failed: %s", exc)


# --- per-attempt accumulation -----------------------------------------------------------


@dataclass
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class _Attempt:
    """Text, tool-call pieces, finish reason and usage gathered from one model."""

    model: str
    emitted: bool = False
    text: list[str] = field(default_factory=list)
    tool_parts: dict[int, _ToolCallParts] = field(default_factory=dict)
    finish_reason: str = ""
    usage: Any = None

    def absorb(self, chunk: Any) -> list[TokenEvent]:
        """Record one litellm chunk; return the TokenEvents it carries."""
        if getattr(chunk, "usage", None):
            self.usage = chunk.usage
        events: list[TokenEvent] = []
        for choice in getattr(chunk, "choices", None) or []:
            delta = getattr(choice, "delta", None)
            content = getattr(delta, "content", None)
            if isinstance(content, str) and content:
                self.text.append(content)
                events.append(TokenEvent(content))
            for piece in getattr(delta, "tool_calls", None) or []:
                self._add_tool_piece(piece)
            self.finish_reason = getattr(choice, "finish_reason", None) or self.finish_reason
        self.emitted = self.emitted or bool(events)
        return events

    def _add_tool_piece(self, piece: Any) -> None:
        index = getattr(piece, "index", None)
        call_id = getattr(piece, "id", None) or ""
        if index is None:  # some providers omit it: a new id means a new call
            last = max(self.tool_parts, default=-1)
            fresh = last < 0 or (call_id and call_id != self.tool_parts[last].id)
            index = last + 1 if fresh else last
        parts = self.tool_parts.setdefault(index, _ToolCallParts())
        parts.id = parts.id or call_id
        function = getattr(piece, "function", None)
        parts.name = parts.name or (getattr(function, "name", None) or "")
        arguments = getattr(function, "arguments", None)
        if isinstance(arguments, dict):  # some providers send parsed arguments whole
            arguments = json.dumps(arguments)
        parts.arguments += arguments or ""

    def done(self, messages: list[dict]) -> DoneEvent:
        """The DoneEvent for a stream that completed."""
        calls = [_parse_tool_call(self.tool_parts[i]) for i in sorted(self.tool_parts)]
        reason = self.finish_reason or ("tool_calls" if calls else "stop")
        return DoneEvent(self.model, self._usage(messages), calls, reason)

    def _usage(self, messages: list[dict]) -> Usage:
        prompt = int(getattr(self.usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(self.usage, "completion_tokens", 0) or 0)
        if not prompt:
            prompt = count_tokens(self.model, messages)
        if not completion:
            completion = _count_text(self.model, "".join(self.text) + self._tool_text())
        return Usage(prompt, completion, _cost(self.model, prompt, completion))

    def _tool_text(self) -> str:
        return "".join(p.name + p.arguments for p in self.tool_parts.values())


def _parse_tool_call(parts: _ToolCallParts) -> ToolCallRequest:
    call_id = parts.id or f"call_{uuid.uuid4().hex[:24]}"
    try:
        arguments = json.loads(parts.arguments) if parts.arguments.strip() else {}
    except ValueError as exc:
        return ToolCallRequest(call_id, parts.name, {}, f"arguments are not valid JSON: {exc}")
    if not isinstance(arguments, dict):
        return ToolCallRequest(call_id, parts.name, {}, "arguments are not a JSON object")
    return ToolCallRequest(call_id, parts.name, arguments)


def _cost(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    """USD cost from litellm's bundled price map; 0.0 for anything it cannot price."""
    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
        return float(prompt_cost) + float(completion_cost)
    except Exception:  # unknown/self-hosted models have no price: that is not an error
        return 0.0


# --- tokens and context ------------------------------------------------------------------


def count_tokens(model: str, messages: list[dict]) -> int:
    """Prompt tokens for ``messages`` (litellm's counter; a crude estimate if it fails)."""
    try:
        return int(litellm.token_counter(model=model or "gpt-4o-mini", messages=messages))
    except Exception:  # unusual content shapes or tokenizers must not break a reply
        return _crude_count(json.dumps(_without_images(messages), default=str)) + 3 * len(messages)


def _without_images(messages: list[dict]) -> list[dict]:
    """`messages` with each image part's base64 (thousands of characters, ~1k tokens) made a stub."""
    def part(item: Any) -> Any:
        is_image = isinstance(item, dict) and item.get("type") == "image_url"
        return {"type": "image_url", "image_url": "x" * _IMAGE_PART_CHARS} if is_image else item

    return [{**m, "content": [part(p) for p in m["content"]]} if isinstance(m.get("content"), list) else m
            for m in messages]


def _count_text(model: str, text: str) -> int:
    if not text:
        return 0
    try:
        return int(litellm.token_counter(model=model or "gpt-4o-mini", text=text))
    except Exception:
        return _crude_count(text)


def _crude_count(text: str) -> int:
    return len(text) // 4 + 1  # ~4 characters per token for English


def context_window(model: str) -> int:
    """Max input tokens of ``model`` per litellm's local map; 8192 when unknown."""
    try:
        info = litellm.get_model_info(model)
    except Exception:  # unmapped (self-hosted) models are the normal case here
        return DEFAULT_CONTEXT_WINDOW
    return int(info.get("max_input_tokens") or info.get("max_tokens") or DEFAULT_CONTEXT_WINDOW)


def supports_tools(model: str) -> bool:
    """Whether ``model`` can do function calling.

    ``openai/<anything>`` means an OpenAI-compatible server (vLLM, llama.cpp,
    the fake provider...) that litellm cannot know about: assume it can.
    """
    if model.startswith("openai/"):
        return True
    try:
        return bool(litellm.supports_function_calling(model=model))
    except Exception:
        return False


def supports_vision(model: str) -> bool:
    """Whether ``model`` accepts image parts, per litellm's local map.

    ``openai/<anything>`` is an OpenAI-compatible server litellm cannot know: unlike
    tools, an image it cannot take fails the whole request, so assume it cannot.
    """
    if not model or model.startswith("openai/"):
        return False
    try:
        return bool(litellm.supports_vision(model=model))
    except Exception:  # unmapped models are the normal case for self-hosted providers
        return False


def trim_to_window(model: str, messages: list[dict], *, reserve: int) -> list[dict]:
    """Drop the oldest history until ``count_tokens + reserve <= context_window``.

    System messages and the last user message are never dropped; an assistant
    tool-call message goes together with its tool results so the history stays
    valid. If even the protected messages do not fit, they are returned alone.
    ``reserve`` should cover the reply (max_tokens) and any tool schemas sent.
    Returns a new list; ``messages`` is not modified.
    """
    budget = context_window(model) - reserve
    if _token_upper_bound(messages) <= budget or count_tokens(model, messages) <= budget:
        return list(messages)  # the usual case: it fits, no search
    units = _droppable_units(messages)

    def kept(drop: int) -> list[dict]:
        dropped = {i for unit in units[:drop] for i in unit}
        return [m for i, m in enumerate(messages) if i not in dropped]

    low, high = 0, len(units)  # fewest units to drop; token count shrinks as drop grows
    while low < high:
        middle = (low + high) // 2
        if count_tokens(model, kept(middle)) <= budget:
            high = middle
        else:
            low = middle + 1
    return kept(low)


def _token_upper_bound(messages: list[dict]) -> int:
    """More tokens than any tokenizer makes of `messages`, without running one.

    A BPE or word-piece token covers at least one byte of UTF-8 (an image part's base64
    is far longer than its token cost), plus a few tokens of framing per message. A
    prompt far below the window then needs no exact count (tiktoken takes ~1 ms).
    """
    return sum(len(json.dumps(m, ensure_ascii=False, default=str).encode()) + 8 for m in messages)


def _droppable_units(messages: list[dict]) -> list[list[int]]:
    """Indices of droppable messages, oldest first, grouped so tool results follow their call."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    units: list[list[int]] = []
    for i, message in enumerate(messages):
        if i == last_user or message.get("role") == "system":
            continue
        previous = units[-1] if units else []
        answers_previous = bool(previous) and previous[-1] == i - 1 and _calls_tools(messages[previous[0]])
        if message.get("role") == "tool" and answers_previous:
            previous.append(i)
        else:
            units.append([i])
    return units


def _calls_tools(message: dict) -> bool:
    return message.get("role") == "assistant" and bool(message.get("tool_calls"))
