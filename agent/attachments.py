"""Files a customer attaches in the chat, turned into text the agent can read.

A thin door to knowledge.conversion so conversations never imports knowledge
(imports flow conversations → agent → knowledge).
"""
from __future__ import annotations

from dataclasses import replace

from django.conf import settings

from agent.schema import AttachmentItem, ConversationStore

IMAGE_MAGICS = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF87a": "image/gif",
                b"GIF89a": "image/gif"}
IMAGE_EXTENSIONS = {"png", "jpg", "jpeg", "gif", "webp"}
# Shown to a vision model per message: each image costs ~1k prompt tokens, and providers cap sizes.
MAX_IMAGES_PER_MESSAGE = 4
MAX_IMAGE_MB = 5
MAX_IMAGE_BYTES = MAX_IMAGE_MB * 1024 * 1024


class AttachmentError(Exception):
    """A file we cannot read; `message` is fit to show to the customer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def image_type(data: bytes) -> str | None:
    """The MIME type of a PNG/JPEG/GIF/WebP judged by its bytes, else None (never SVG)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in IMAGE_MAGICS.items() if data.startswith(magic)), None)


def convert_attachment(data: bytes, filename: str) -> tuple[str, str]:
    """(markdown, kind) of a document; AttachmentError when it cannot be read."""
    from knowledge.conversion import ConversionError, convert_bytes

    try:
        converted = convert_bytes(
            data, filename, max_bytes=settings.ATTACHMENT_MAX_MB * 1024 * 1024,
            max_unzipped_bytes=settings.UPLOAD_MAX_UNZIPPED_MB * 1024 * 1024,
            timeout_s=settings.CONVERSION_TIMEOUT_S,
        )
    except ConversionError as error:
        message = "Unsupported file type" if error.code == "unsupported_type" else f"Could not read this file: {error.message}"
        raise AttachmentError(error.code, message) from error
    return converted.markdown, converted.kind


def vision_enabled() -> bool:
    """Whether image attachments are shown to the configured LLM (LLM_VISION; never in grounded mode)."""
    if not settings.LLM_MODEL or settings.LLM_VISION == "false":
        return False
    if settings.LLM_VISION == "true":
        return True
    from agent.llm import supports_vision

    return supports_vision(settings.LLM_MODEL)


def is_image(item: AttachmentItem) -> bool:
    return item.status == "ready" and item.content_type.startswith("image/")


def load_images(store: ConversationStore, items: list[AttachmentItem]) -> tuple[list[AttachmentItem], list[str]]:
    """`items` with the bytes of the images a vision model is shown, and a note for each it is not."""
    loaded: list[AttachmentItem] = []
    notes: list[str] = []
    for item in items:
        if is_image(item):
            item, reason = _load_image(store, item, shown=sum(bool(i.data) for i in loaded))
            notes += [f"(The image {item.name!r} is not shown to you: {reason}.)"] if reason else []
        loaded.append(item)
    return loaded, notes


def _load_image(store: ConversationStore, item: AttachmentItem, *, shown: int) -> tuple[AttachmentItem, str]:
    """(item with its bytes, "") or (item, why it is left out)."""
    too_large = f"it is larger than {MAX_IMAGE_MB} MB"
    if item.size > MAX_IMAGE_BYTES:
        return item, too_large  # judged before reading: a huge file is never loaded
    if shown >= MAX_IMAGES_PER_MESSAGE:
        return item, f"only {MAX_IMAGES_PER_MESSAGE} images per message can be shown"
    data = store.attachment_bytes(item.attachment_id) if item.attachment_id is not None else b""
    if not data:
        return item, "it could not be read"
    if len(data) > MAX_IMAGE_BYTES:
        return item, too_large
    return replace(item, data=data), ""
