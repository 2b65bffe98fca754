from celery import shared_task

from conversations.retention import memories_purge_expired


@shared_task(ignore_result=True)
def purge_expired_memories() -> int:
    """Beat job: delete memories past MEMORY_TTL (idempotent)."""
    return memories_purge_expired()
