import time

from celery import shared_task
from django.core.cache import cache

from supportdesk.health import HEARTBEAT_KEY


@shared_task(ignore_result=True)
def heartbeat() -> None:
    """Proves to /readyz that a worker (and beat) are alive."""
    cache.set(HEARTBEAT_KEY, time.time(), timeout=300)
