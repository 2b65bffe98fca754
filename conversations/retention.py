"""Retention: what expires is deleted."""
from __future__ import annotations

from django.utils import timezone

from conversations.models import Memory


def memories_purge_expired() -> int:
    deleted, _ = Memory.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted
