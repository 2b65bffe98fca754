"""The agent's view of one conversation (implements agent.schema.ConversationStore)."""
from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from agent.schema import AttachmentItem, HistoryItem, MemoryItem
from conversations.models import Attachment, Memory, Message

SPOKEN_ROLES = (Message.Role.USER, Message.Role.ASSISTANT, Message.Role.HUMAN)


class DbConversationStore:
    def __init__(self, *, session_id: int, message_id: int) -> None:
        self.session_id = session_id
        self.message_id = message_id

    def _earlier(self):  # type: ignore[no-untyped-def]
        return (Message.objects.filter(session_id=self.session_id, role__in=SPOKEN_ROLES, id__lt=self.message_id)
                .exclude(content=""))

    def history(self, limit: int) -> list[HistoryItem]:
        if limit <= 0:
            return []
        return _items(self._earlier().order_by("-id")[:limit])

    def older_history(self, skip_recent: int, after_id: int | None = None) -> list[HistoryItem]:
        """Turns older than the `skip_recent` most recent ones, and newer than message `after_id`.

        Filtering before skipping is right: when `after_id` is older than the window the first
        `skip_recent` rows are the window; when it is inside the window nothing is left.
        """
        rows = self._earlier()
        if after_id is not None:
            rows = rows.filter(id__gt=after_id)
        return _items(rows.order_by("-id")[skip_recent:])

    def memories(self) -> list[MemoryItem]:
        rows = Memory.objects.filter(session_id=self.session_id, expires_at__gt=timezone.now()).order_by("kind", "key")
        return [MemoryItem(m.kind, m.key, m.content, m.folded_until) for m in rows]

    def attachments(self) -> list[AttachmentItem]:
        rows = Attachment.objects.filter(message_id=self.message_id).order_by("id")
        return [AttachmentItem(a.original_name, a.content_type, a.text, a.status, a.file.url if a.file else "",
                               attachment_id=a.pk, size=a.size)
                for a in rows]

    def attachment_bytes(self, attachment_id: int) -> bytes:
        """The stored file of one of this message's attachments; b"" when it is gone."""
        row = Attachment.objects.filter(message_id=self.message_id, pk=attachment_id).first()
        if row is None or not row.file:
            return b""
        try:
            with row.file.open("rb") as handle:
                return handle.read()
        except OSError:  # deleted from storage (retention) while the message was waiting
            return b""

    def save_memories(self, *, facts: dict[str, str], summary: str | None, ttl_s: int,
                      folded_until: int | None = None) -> None:
        expires = timezone.now() + timedelta(seconds=ttl_s)
        with transaction.atomic():
            for key, value in facts.items():
                Memory.objects.update_or_create(session_id=self.session_id, kind=Memory.Kind.FACT, key=key,
                                                defaults={"content": value[:500], "expires_at": expires})
            if summary:
                Memory.objects.update_or_create(session_id=self.session_id, kind=Memory.Kind.SUMMARY, key="",
                                                defaults={"content": summary, "expires_at": expires,
                                                          "folded_until": folded_until})


def _items(newest_first) -> list[HistoryItem]:  # type: ignore[no-untyped-def]
    rows = list(newest_first.values_list("id", "role", "content", "confidence"))
    return [HistoryItem(role, content, confidence, pk) for pk, role, content, confidence in reversed(rows)]
