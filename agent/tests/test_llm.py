"""agent.llm against a real local HTTP fake provider: litellm's own code runs end to end."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from typing import Annotated, Any, List, Optional, TypedDict

import pytest
from openai._utils._transform import PropertyInfo

from agent.fake_llm import Behaviour, FakeLLM
from agent.llm import (
    DoneEvent,
    FailoverEvent,
    LLMConfig,
    LLMUnavailable,
    TokenEvent,
    context_window,
    count_tokens,
    stream_chat,
    supports_tools,
    trim_to_window,
)

pytestmark = pytest.mark.timeout(20)

ORDER_TOOL = {
    "type": "function",
    "function": {
        "name": "order_status",
        "description": "Look up an order",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
    },
}


@pytest.fixture
def fake():
    with FakeLLM() as server:
        yield server


def config_for(fake: FakeLLM, model: str = "openai/fake-model", **overrides) -> LLMConfig:
    settings: dict[str, Any] = {"api_base": fake.base_url, "api_key": "test-key", "chunk_timeout_s": 0.5,
                "first_chunk_timeout_s": 2.0, "timeout_s": 10.0}
    settings.update(overrides)
    return LLMConfig(model=model, **settings)


def user(text: str) -> list[dict]:
    return [{"role": "system", "content": "You are a support agent."}, {"role": "user", "content": text}]


async def collect(config: LLMConfig, messages: list[dict], **kwargs) -> list:
    return [event async for event in stream_chat(config, messages, **kwargs)]


def text_of(events: list) -> str:
    return "".join(e.text for e in events if isinstance(e, TokenEvent))


def text_after_last_failover(events: list) -> str:
    last = max((i for i, e in enumerate(events) if isinstance(e, FailoverEvent)), default=-1)
    return text_of(events[last + 1 :])


# --- happy path ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_streamed_text_arrives_in_order_as_several_token_events(fake):
    fake.script(Behaviour(kind="text", text="Your refund was issued on Monday."))

    events = await collect(config_for(fake), user("Where is my refund?"))

    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert len(tokens) >= 5
    assert text_of(events) == "Your refund was issued on Monday."
    assert isinstance(events[-1], DoneEvent) and events[-1].finish_reason == "stop"
    assert fake.disconnects == 0


@pytest.mark.asyncio
async def test_echo_shows_the_prompt_reached_the_provider(fake):
    events = await collect(config_for(fake), user("my parcel is late"))

    assert text_of(events) == "You said: my parcel is late"
    assert fake.requests[0]["messages"][-1]["content"] == "my parcel is late"
    assert fake.requests[0]["stream"] is True


@pytest.mark.asyncio
async def test_done_event_reports_provider_usage_and_zero_cost_for_unpriced_model(fake):
    fake.script(Behaviour(kind="text", text="ok then", prompt_tokens=123, completion_tokens=45))

    done = (await collect(config_for(fake), user("hi")))[-1]

    assert done.model == "openai/fake-model"
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (123, 45)
    assert done.usage.cost_usd == 0.0


@pytest.mark.asyncio
async def test_known_model_is_priced_from_the_local_cost_map(fake):
    fake.script(Behaviour(kind="text", text="priced", prompt_tokens=1000, completion_tokens=500))

    done = (await collect(config_for(fake, "openai/gpt-4o-mini"), user("hi")))[-1]

    # gpt-4o-mini: $0.15 / 1M input, $0.60 / 1M output tokens
    assert done.usage.cost_usd == pytest.approx(1000 * 0.15e-6 + 500 * 0.60e-6)
    assert fake.models == ["gpt-4o-mini"]


@pytest.mark.asyncio
async def test_streamed_tool_call_is_parsed_into_a_tool_call_request(fake):
    fake.script(Behaviour(kind="tool_call", tool_name="order_status", tool_args={"order_id": "1001"}))

    events = await collect(config_for(fake), user("Where is order 1001?"), tools=[ORDER_TOOL])

    done = events[-1]
    assert done.finish_reason == "tool_calls"
    calls = [(c.name, c.arguments, c.error) for c in done.tool_calls]
    assert calls == [("order_status", {"order_id": "1001"}, None)]
    assert done.tool_calls[0].id
    assert text_of(events) == ""
    assert fake.requests[0]["tools"][0]["function"]["name"] == "order_status"


@pytest.mark.asyncio
async def test_marker_in_user_message_steers_the_fake_into_a_tool_call(fake):
    message = 'Order please [[fake:tool:order_status:{"order_id":"77"}]]'

    done = (await collect(config_for(fake), user(message), tools=[ORDER_TOOL]))[-1]

    assert done.tool_calls[0].name == "order_status"
    assert done.tool_calls[0].arguments == {"order_id": "77"}


# --- failover -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_http_500_fails_over_to_a_working_fallback(fake):
    fake.script(Behaviour(kind="error", status=500), Behaviour(kind="text", text="Fallback answer"))
    config = config_for(fake, fallback_models=("openai/fake-fallback",))

    events = await collect(config, user("hello"))

    failover = events[0]
    assert isinstance(failover, FailoverEvent)
    assert (failover.model, failover.next_model, failover.restarted) == (
        "openai/fake-model", "openai/fake-fallback", False)
    assert "500" in failover.error
    assert text_of(events) == "Fallback answer"
    assert events[-1].model == "openai/fake-fallback"
    assert fake.models == ["fake-model", "fake-fallback"]


@pytest.mark.asyncio
async def test_model_name_routing_breaks_the_primary_without_scripting(fake):
    config = config_for(fake, "openai/fake-broken", fallback_models=("openai/fake-model",))

    events = await collect(config, user("ping"))

    assert [type(e) for e in events if not isinstance(e, TokenEvent)] == [FailoverEvent, DoneEvent]
    assert text_of(events) == "You said: ping"


@pytest.mark.asyncio
async def test_stall_mid_stream_is_cut_by_chunk_timeout_not_stall_seconds(fake):
    fake.script(Behaviour(kind="stall", stall_after=2, stall_seconds=30),
                Behaviour(kind="text", text="Recovered answer"))
    config = config_for(fake, fallback_models=("openai/fake-fallback",))

    started = time.monotonic()
    events = await collect(config, user("tell me a story"))
    elapsed = time.monotonic() - started

    assert elapsed < 1.5
    failover = next(e for e in events if isinstance(e, FailoverEvent))
    assert failover.restarted is True  # two tokens were already out: caller drops them
    assert "silent" in failover.error
    assert text_after_last_failover(events) == "Recovered answer"
    assert await asyncio.to_thread(fake.wait_for_disconnects, 1, 3.0)


@pytest.mark.asyncio
async def test_keepalive_comments_do_not_keep_a_stalled_stream_alive(fake):
    fake.script(Behaviour(kind="keepalive_stall", stall_after=2, stall_seconds=30))

    started = time.monotonic()
    with pytest.raises(LLMUnavailable) as caught:
        await collect(config_for(fake), user("hello"))

    assert time.monotonic() - started < 1.5
    assert "silent" in caught.value.errors[0][1]
    assert await asyncio.to_thread(fake.wait_for_disconnects, 1, 3.0)


@pytest.mark.asyncio
async def test_no_first_content_within_first_chunk_timeout_fails(fake):
    fake.script(Behaviour(kind="stall", stall_after=0, stall_seconds=30))

    started = time.monotonic()
    with pytest.raises(LLMUnavailable) as caught:
        await collect(config_for(fake, first_chunk_timeout_s=0.5, chunk_timeout_s=5.0), user("hello"))

    assert time.monotonic() - started < 1.5
    assert "no content within" in caught.value.errors[0][1]


@pytest.mark.asyncio
async def test_slow_but_steady_stream_is_cut_by_whole_request_timeout(fake):
    fake.script(Behaviour(kind="text", text="word " * 40, token_delay=0.1))

    started = time.monotonic()
    with pytest.raises(LLMUnavailable) as caught:
        await collect(config_for(fake, timeout_s=1.0), user("hello"))

    assert time.monotonic() - started < 1.8
    assert "within 1.0s" in caught.value.errors[0][1]


@pytest.mark.asyncio
async def test_malformed_chunk_fails_over(fake):
    fake.script(Behaviour(kind="malformed", stall_after=2), Behaviour(kind="text", text="Clean answer"))
    config = config_for(fake, fallback_models=("openai/fake-fallback",))

    events = await collect(config, user("hello"))

    failover = next(e for e in events if isinstance(e, FailoverEvent))
    assert failover.restarted is True
    assert text_after_last_failover(events) == "Clean answer"
    assert isinstance(events[-1], DoneEvent)


@pytest.mark.asyncio
async def test_stream_ending_without_finish_reason_counts_as_failure(fake):
    fake.script(Behaviour(kind="truncated", stall_after=2), Behaviour(kind="text", text="Whole answer"))
    config = config_for(fake, fallback_models=("openai/fake-fallback",))

    events = await collect(config, user("hello"))

    failover = next(e for e in events if isinstance(e, FailoverEvent))
    assert "truncated" in failover.error
    assert text_after_last_failover(events) == "Whole answer"


@pytest.mark.asyncio
async def test_all_models_failing_raises_llm_unavailable_listing_each(fake):
    config = config_for(fake, "openai/fake-broken",
                        fallback_models=("openai/fake-error-429", "openai/fake-malformed"))
    seen: list = []

    with pytest.raises(LLMUnavailable) as caught:
        async for event in stream_chat(config, user("hello")):
            seen.append(event)

    errors = caught.value.errors
    assert [model for model, _ in errors] == [
        "openai/fake-broken", "openai/fake-error-429", "openai/fake-malformed"]
    assert "RateLimit" in errors[1][1]
    failed_over = [e.model for e in seen if isinstance(e, FailoverEvent)]
    assert failed_over == ["openai/fake-broken", "openai/fake-error-429"]
    assert len(fake.requests) == 3  # neither litellm nor the OpenAI SDK retried behind our back


@pytest.mark.asyncio
async def test_unconfigured_model_raises_llm_unavailable_without_calling_anyone(fake):
    with pytest.raises(LLMUnavailable):
        await collect(LLMConfig(model=""), user("hello"))
    assert fake.requests == []


# --- cancellation ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_cancelling_the_consumer_closes_the_http_stream(fake):
    fake.script(Behaviour(kind="text", text="word " * 200, token_delay=0.05))
    received: list = []

    async def consume() -> None:
        async for event in stream_chat(config_for(fake), user("long answer please")):
            received.append(event)

    task = asyncio.create_task(consume())
    while len(received) < 2:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await asyncio.to_thread(fake.wait_for_disconnects, 1, 3.0)


@pytest.mark.asyncio
async def test_breaking_out_of_the_stream_closes_the_http_stream(fake):
    fake.script(Behaviour(kind="text", text="word " * 200, token_delay=0.05))

    async with aclosing(stream_chat(config_for(fake), user("long answer please"))) as events:
        async for event in events:
            if isinstance(event, TokenEvent):
                break

    assert await asyncio.to_thread(fake.wait_for_disconnects, 1, 3.0)


# --- tokens and context window ---------------------------------------------------------------


def test_count_tokens_grows_with_content_and_survives_odd_content():
    short = count_tokens("openai/fake-model", [{"role": "user", "content": "hi"}])
    long = count_tokens("openai/fake-model", [{"role": "user", "content": "hi " * 100}])
    odd = count_tokens("openai/fake-model", [{"role": "user", "content": {"unexpected": object()}}])

    assert 0 < short < long
    assert odd > 0


def test_context_window_uses_local_map_and_defaults_for_unknown_models():
    assert context_window("openai/gpt-4o-mini") == 128000
    assert context_window("openai/some-self-hosted-model") == 8192


def test_supports_tools_assumes_openai_compatible_servers_can_call_tools():
    assert supports_tools("openai/some-self-hosted-model") is True
    assert supports_tools("anthropic/claude-haiku-4-5") is True
    assert supports_tools("not-a-provider/unknown") is False


def _history(pairs: int, words: int) -> list[dict]:
    messages = [{"role": "system", "content": "You are a support agent."}]
    for n in range(pairs):
        messages.append({"role": "user", "content": f"question {n} " + "word " * words})
        messages.append({"role": "assistant", "content": f"answer {n} " + "word " * words})
    messages.append({"role": "user", "content": "the last question"})
    return messages


def test_trim_to_window_drops_oldest_history_but_keeps_system_and_last_user():
    messages = _history(pairs=20, words=500)  # ~20k tokens against the 8192 default window
    original = list(messages)

    trimmed = trim_to_window("openai/fake-model", messages, reserve=800)

    assert trimmed[0] == messages[0] and trimmed[-1] == messages[-1]
    assert count_tokens("openai/fake-model", trimmed) + 800 <= 8192
    assert trimmed[1:-1] == messages[len(messages) - len(trimmed) + 1 : -1]  # a contiguous, newest slice
    assert len(trimmed) > 2  # it kept what fits instead of dropping everything
    assert messages == original


def test_trim_to_window_keeps_everything_when_it_fits():
    messages = _history(pairs=2, words=10)

    assert trim_to_window("openai/fake-model", messages, reserve=800) == messages


def test_trim_to_window_never_drops_system_or_last_user_even_when_over_budget():
    messages = _history(pairs=3, words=50)

    trimmed = trim_to_window("openai/fake-model", messages, reserve=8190)

    assert trimmed == [messages[0], messages[-1]]


def test_trim_to_window_drops_a_tool_call_together_with_its_results():
    call: dict[str, Any] = {
        "id": "call_1", "type": "function", "function": {"name": "order_status", "arguments": "{}"}}
    messages: list[dict] = [
        {"role": "system", "content": "You are a support agent."},
        {"role": "user", "content": "old question"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "status: shipped " * 500},
        {"role": "assistant", "content": "It shipped."},
        {"role": "user", "content": "thanks, and now?"},
    ]
    without_old_question = messages[:1] + messages[2:]
    # Budget such that dropping the old question alone is not enough.
    reserve = 8192 - count_tokens("openai/fake-model", without_old_question) + 100

    trimmed = trim_to_window("openai/fake-model", messages, reserve=reserve)

    assert trimmed == [messages[0], messages[4], messages[5]]


@pytest.mark.asyncio
async def test_slow_consumer_does_not_count_as_provider_silence(fake):
    fake.script(Behaviour(kind="text", text="one two three four"))
    events: list = []

    async for event in stream_chat(config_for(fake), user("hello")):
        events.append(event)
        if isinstance(event, TokenEvent) and len(events) < 3:
            await asyncio.sleep(0.7)  # longer than chunk_timeout_s: e.g. a slow websocket

    assert text_of(events) == "one two three four"
    assert not any(isinstance(e, FailoverEvent) for e in events)


@pytest.mark.parametrize("text", [
    "plain English words " * 50,
    "Größe, café, naïve — ümlaut text " * 30,
    "数字と日本語の文章です。" * 40,
    "emoji 🎉🚀 and symbols ∑∫≈ " * 40,
    "a" * 3000,
    "1 2 3 4 5 6 7 8 9 0 " * 100,
])
def test_the_cheap_token_bound_is_never_below_the_real_count(text):
    from agent.llm import _token_upper_bound

    messages = [{"role": "system", "content": "You are a support agent."}, {"role": "user", "content": text}]
    assert _token_upper_bound(messages) >= count_tokens("gpt-4o-mini", messages)
    assert _token_upper_bound(messages) >= count_tokens("openai/fake-model", messages)


def test_streamed_chunks_parse_without_the_sdks_protocol_isinstance():
    import openai._models as models
    from openai.types.chat import ChatCompletionChunk

    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": " word"}, "finish_reason": None}]}
    parsed = models.construct_type(type_=ChatCompletionChunk, value=chunk)

    assert models._ConfigProtocol.__name__ == "_NoPydanticV1Config"  # the slow Protocol check is gone
    assert parsed.choices[0].delta.content == " word" and parsed.choices[0].delta.role == "assistant"
    assert parsed.model_dump(exclude_unset=True) == chunk


REQUEST_BODIES = [
    {"messages": [{"role": "system", "content": "You are a support agent."}, {"role": "user", "content": "Hi"}],
     "model": "fake", "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 800,
     "temperature": 0.2},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                               {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]},
                  {"role": "assistant", "content": None, "tool_calls": [
                      {"id": "c1", "type": "function", "function": {"name": "order_status", "arguments": "{}"}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "shipped"}],
     "model": "fake", "stream": True, "tools": [ORDER_TOOL], "tool_choice": "auto", "metadata": {"k": "v"}},
]


def _count_sdk_transforms(monkeypatch) -> list[object]:
    import openai._utils._transform as transform

    calls: list[object] = []
    real = transform.async_transform
    monkeypatch.setattr(transform, "async_transform", lambda data, kind: calls.append(kind) or real(data, kind))
    return calls


@pytest.mark.parametrize("body", REQUEST_BODIES)
async def test_a_plain_request_body_skips_the_sdks_transform_and_is_sent_as_it_would_send_it(body, monkeypatch):
    import openai._utils as sdk
    from openai import NOT_GIVEN
    from openai.resources.chat.completions import completions
    from openai.types.chat.completion_create_params import CompletionCreateParamsStreaming as Params

    with_unset = {**body, "audio": NOT_GIVEN, "seed": NOT_GIVEN}  # as the SDK's create() passes them
    expected = await sdk.async_maybe_transform(with_unset, Params)
    calls = _count_sdk_transforms(monkeypatch)
    assert await completions.async_maybe_transform(with_unset, Params) == expected == body
    assert calls == [], "the walk was skipped"


async def test_a_body_the_sdk_must_rewrite_still_goes_through_its_transform(monkeypatch):
    import datetime

    from openai.resources.chat.completions import completions
    from openai.types.chat.completion_create_params import CompletionCreateParamsStreaming as Params

    calls = _count_sdk_transforms(monkeypatch)
    body = {"messages": ({"role": "user", "content": "Hi"},), "model": "fake", "metadata": {"at": datetime.date(2026, 1, 2)}}
    rewritten = await completions.async_maybe_transform(body, Params)
    assert rewritten["messages"] == [{"role": "user", "content": "Hi"}], "a tuple became the list JSON needs"
    assert calls == [Params]


class _Card(TypedDict):
    card_id: Annotated[str, PropertyInfo(alias="cardID")]


class _AliasedParams(TypedDict, total=False):
    name: str
    cards: Optional[List[_Card]]


class _PlainParams(TypedDict, total=False):
    name: str
    tags: List[str]


def test_request_types_with_an_alias_anywhere_are_not_shortcut():
    from agent.llm import _has_aliases

    assert _has_aliases(_AliasedParams) and not _has_aliases(_PlainParams)
