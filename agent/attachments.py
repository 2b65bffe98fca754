"""Files a customer attaches in the chat, turned into text the agent can read.

A thin door to knowledge.conversion so conversations never imports knowledge
(imports flow conversations → agent → knowledge).
"""
from __future__ import annotations

from django.conf import settings

IMAGE_MAGICS = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF87a": "image/gif",
                b"GIF89a": "image/gif"}
IMAGE_EXTENSIONS = {"png", "jpg", "jpeg", "gif", "webp"}


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
