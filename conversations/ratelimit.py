"""Rate limits on messages, uploads and new sessions, per chat session and per IP.

HTTP goes through django-ratelimit; the socket uses `hit()` below, which keeps the
very same counters (django-ratelimit's cache key scheme and fixed windows), so a
client cannot double its allowance by switching transport. When Redis is down the
limits fail open: the chat keeps working unlimited rather than breaking.
"""
from __future__ import annotations

import hashlib
import logging
import time
import zlib
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest
from django_ratelimit.core import get_usage

from conversations.metrics import RATE_LIMITED

log = logging.getLogger(__name__)
SETTING = {"messages": "RATE_LIMIT_MESSAGES", "uploads": "RATE_LIMIT_UPLOADS", "sessions": "RATE_LIMIT_SESSIONS"}
WHAT = {"messages": "sending messages", "uploads": "uploading files", "sessions": "starting new chats"}
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
EXPIRATION_FUDGE = 5  # django-ratelimit's: keys outlive their window a little


@dataclass(frozen=True)
class Limited:
    kind: str
    wait_s: int

    @property
    def message(self) -> str:
        return f"You're {WHAT[self.kind]} too fast — please try again in {_human(self.wait_s)}."


def _human(seconds: int) -> str:
    seconds = max(1, seconds)
    if seconds < 90:
        return f"{seconds} s"
    return f"{round(seconds / 60)} min" if seconds < 5400 else f"{round(seconds / 3600)} h"


def group(kind: str) -> str:
    return f"chat.{kind}"


def rate(kind: str) -> str:
    return getattr(settings, SETTING[kind])


def split_rate(value: str) -> tuple[int, int]:
    count, _, per = value.partition("/")
    multiplier, unit = per[:-1], per[-1]
    return int(count), int(multiplier or 1) * PERIODS[unit]


def window_end(value: str, period: int, now: int) -> int:
    """The end of the current fixed window, jittered per key as django-ratelimit does."""
    if period == 1:
        return now
    end = now - (now % period) + (zlib.crc32(value.encode()) % period)
    return end + period if end < now else end


def cache_key(kind: str, value: str, window: int) -> str:
    count, period = split_rate(rate(kind))
    parts = [group(kind), f"{count}/{period}s", value, str(window), ""]  # "" = every HTTP method
    return getattr(settings, "RATELIMIT_CACHE_PREFIX", "rl:") + hashlib.sha256("".join(parts).encode()).hexdigest()


def _count(kind: str, value: str) -> tuple[int | None, int]:
    """Increment one counter; (count, seconds left), count None when the cache failed."""
    _, period = split_rate(rate(kind))
    now = int(time.time())
    window = window_end(value, period, now)
    key = cache_key(kind, value, window)
    cache = caches[settings.RATELIMIT_USE_CACHE]
    try:
        if cache.add(key, 1, period + EXPIRATION_FUDGE):
            return 1, window - now
        return cache.incr(key), window - now
    except Exception:  # Redis down or key evicted mid-way: fail open
        log.warning("rate limit counter unavailable", exc_info=True)
        return None, 0


def hit(kind: str, *, values: list[str], channel: str = "ws") -> Limited | None:
    """Count one action against each key (session, IP); Limited when any is over."""
    limit, _ = split_rate(rate(kind))
    for value in values:
        count, wait = _count(kind, value)
        if count is not None and count > limit:
            RATE_LIMITED.labels(kind, channel).inc()
            return Limited(kind, wait)
    return None


def hit_http(request: HttpRequest, kind: str, *, values: list[str], channel: str = "http") -> Limited | None:
    """The same as `hit`, through django-ratelimit for HTTP requests."""
    for value in values:
        usage = get_usage(request, group=group(kind), key=lambda _g, _r, v=value: v, rate=rate(kind),
                          increment=True)
        if usage is not None and usage["should_limit"]:
            RATE_LIMITED.labels(kind, channel).inc()
            return Limited(kind, max(1, usage["time_left"]))
    return None


def session_key(public_id: object) -> str:
    return f"session:{public_id}"


def ip_key(address: str | None) -> str:
    return f"ip:{address or 'unknown'}"


def client_ip(request: HttpRequest) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a proxy we trust rewrites it.
    return request.META.get("REMOTE_ADDR", "")
