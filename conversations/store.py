"""The agent's view of one conversation (implements agent.schema.ConversationStore)."""
from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from agent.schema import AttachmentItem, HistoryItem, MemoryItem
from conversations.models import Attachment, Memory, Message

SPOKEN_ROLES = (Message.Role.USER, Message.Role.ASSISTANT, Message.Role.HUMAN)


class DbConversationStore:
    def __init__(self, *, session_id: int, message_id: int, has_attachments: bool = True) -> None:
        self.session_id = session_id
        self.message_id = message_id
        self.has_attachments = has_attachments  # False when the caller knows: spares a query

    def _earlier(self):  # type: ignore[no-untyped-def]
        return (Message.objects.filter(session_id=self.session_id, role__in=SPOKEN_ROLES, id__lt=self.message_id)
                .exclude(content=""))

    def turns(self, limit: int, after_id: int | None = None) -> tuple[list[HistoryItem], list[HistoryItem]]:
        """The `limit` most recent turns, and the older ones newer than message `after_id`.

        One query in the usual cases: the turns after the watermark, newest first, split at
        `limit`. When the watermark falls inside the window there are fewer rows than the
        window, nothing older is left unfolded, and the window is read again without it.
        """
        rows = self._earlier()
        if after_id is not None:
            rows = rows.filter(id__gt=after_id)
        newest_first = list(rows.order_by("-id").values_list(*_COLUMNS))
        if after_id is not None and len(newest_first) < limit:
            return _items(list(self._earlier().order_by("-id").values_list(*_COLUMNS)[:limit])), []
        return _items(newest_first[:max(limit, 0)]), _items(newest_first[max(limit, 0):])

    def memories(self) -> list[MemoryItem]:
        rows = Memory.objects.filter(session_id=self.session_id, expires_at__gt=timezone.now()).order_by("kind", "key")
        return [MemoryItem(m.kind, m.key, m.content, m.folded_until) for m in rows]

    def attachments(self) -> list[AttachmentItem]:
        if not self.has_attachments:
            return []
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


_COLUMNS = ("id", "role", "content", "confidence")


def _items(newest_first: list[tuple]) -> list[HistoryItem]:
    return [HistoryItem(role, content, confidence, pk) for pk, role, content, confidence in reversed(newest_first)]
