"""Image attachments: shown to a vision model as data-URL parts, declared unviewable otherwise."""
from __future__ import annotations

import base64
import struct
import zlib

import litellm
import pytest

from agent.attachments import MAX_IMAGES_PER_MESSAGE
from agent.llm import count_tokens, supports_vision, trim_to_window
from agent.models import ToolCall
from conversations.services import attachment_create

pytestmark = pytest.mark.django_db
CANNOT_VIEW = "an image you cannot view"


def png(shade: int = 0) -> bytes:
    """A valid 1×1 greyscale PNG; `shade` makes each image's bytes different."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes([0, shade])))
            + chunk(b"IEND", b""))


def attach(chat, *images: bytes) -> tuple[int, ...]:
    return tuple(attachment_create(session=chat.session, name=f"photo{n}.png", data=data).pk
                 for n, data in enumerate(images))


def last_user_message(llm) -> dict:
    return [m for m in llm.requests[0]["messages"] if m["role"] == "user"][-1]


def image_urls(message: dict) -> list[str]:
    content = message["content"]
    return [p["image_url"]["url"] for p in content if p["type"] == "image_url"] if isinstance(content, list) else []


def prompt_text(llm) -> str:
    return " ".join(str(m.get("content")) for m in llm.requests[0]["messages"])


def test_with_vision_an_attached_png_reaches_the_model_as_a_data_url(chat, llm, settings):
    settings.LLM_VISION = "true"
    image = png(7)
    _, response = chat.ask("It arrived broken, mail jane.doe@example.com", attachment_ids=attach(chat, image))

    message = last_user_message(llm)
    assert image_urls(message) == ["data:image/png;base64," + base64.b64encode(image).decode()]
    text = message["content"][0]
    assert text["type"] == "text" and "[EMAIL]" in text["text"] and "jane.doe" not in text["text"]
    assert CANNOT_VIEW not in prompt_text(llm)
    summary = ToolCall.objects.get(run_id=response.run_id, tool="attachments").result_summary
    assert "1 image(s) passed to the model" in summary


@pytest.mark.parametrize(("vision", "model"), [("false", "gpt-4o-mini"), ("auto", "openai/fake-model")])
def test_without_vision_no_image_is_sent_and_the_prompt_says_it_cannot_be_viewed(chat, llm, settings, vision, model):
    settings.LLM_VISION, settings.LLM_MODEL = vision, model
    _, response = chat.ask("It arrived broken", attachment_ids=attach(chat, png()))

    message = last_user_message(llm)
    assert message["content"] == "It arrived broken"
    assert f'name="photo0.png" type="image/png">({CANNOT_VIEW}' in prompt_text(llm)
    summary = ToolCall.objects.get(run_id=response.run_id, tool="attachments").result_summary
    assert "0 image(s) passed to the model" in summary


def test_images_beyond_the_cap_are_left_out_with_a_note(chat, llm, settings):
    settings.LLM_VISION = "true"
    images = [png(shade) for shade in range(MAX_IMAGES_PER_MESSAGE + 1)]
    chat.ask("Here are the photos", attachment_ids=attach(chat, *images))

    message = last_user_message(llm)
    sent = [base64.b64decode(url.split(",", 1)[1]) for url in image_urls(message)]
    assert sent == images[:MAX_IMAGES_PER_MESSAGE]
    assert f"'photo{MAX_IMAGES_PER_MESSAGE}.png' is not shown to you" in message["content"][0]["text"]


def test_an_image_over_the_size_cap_is_never_read(chat, llm, settings):
    from conversations.models import Attachment

    settings.LLM_VISION = "true"
    ids = attach(chat, png(1), png(2))
    Attachment.objects.filter(pk=ids[0]).update(size=50 * 1024 * 1024)  # as if it were huge
    chat.ask("Two photos", attachment_ids=ids)

    message = last_user_message(llm)
    assert [base64.b64decode(url.split(",", 1)[1]) for url in image_urls(message)] == [png(2)]
    assert "'photo0.png' is not shown to you: it is larger than 5 MB" in message["content"][0]["text"]


def test_vision_is_asked_of_litellm_but_never_assumed_for_openai_compatible_servers():
    assert supports_vision("gpt-4o-mini")
    assert not supports_vision("openai/gpt-4o-mini")
    assert not supports_vision("no-such-provider/no-such-model")


@pytest.mark.parametrize("counter", ["litellm", "crude fallback"])
def test_token_counting_and_trimming_cope_with_image_parts(monkeypatch, counter):
    if counter == "crude fallback":
        monkeypatch.setattr(litellm, "token_counter", lambda **kwargs: 1 / 0)
    url = "data:image/png;base64," + "A" * 400_000  # ~100k tokens if base64 were counted as text
    parts = [{"type": "text", "text": "hello"}, {"type": "image_url", "image_url": {"url": url}}]
    messages = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "old turn " * 50},
                {"role": "user", "content": parts}]
    assert 0 < count_tokens("openai/fake-model", messages) < 5000
    assert trim_to_window("openai/fake-model", messages, reserve=800) == messages


def test_grounded_mode_never_reads_images(chat, settings):
    from agent.tools.registry import get_tool

    settings.LLM_VISION, settings.LLM_MODEL = "true", ""
    ctx = chat.context("It arrived broken", attachment_ids=attach(chat, png()))
    result = get_tool("attachments").run(ctx)
    assert result.summary.endswith("0 image(s) passed to the model")
    assert not any(a.data for a in ctx.attachments) and not ctx.image_notes
