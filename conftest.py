"""Shared fixtures: the users alice (owner), bob (staff agent) and charlie (outsider)."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import caches


@pytest.fixture
def alice(db):
    """The owner: a superuser."""
    return get_user_model().objects.create_superuser("alice", "alice@example.com", "alice-password")


@pytest.fixture
def bob(db):
    """A staff member (support agent) without superuser rights."""
    return get_user_model().objects.create_user("bob", "bob@example.com", "bob-password", is_staff=True)


@pytest.fixture
def charlie(db):
    """An outsider: a signed-in user with no staff rights."""
    return get_user_model().objects.create_user("charlie", "charlie@example.com", "charlie-password")


@pytest.fixture(autouse=True)
def _clean_cache():
    yield
    from django.conf import settings

    if settings.configured:  # pure-module tests may run without Django (-p no:django)
        for cache in caches.all():
            cache.clear()
