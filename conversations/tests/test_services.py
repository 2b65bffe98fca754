"""conversations.services: writes on sessions and messages."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations import services
from conversations.models import ChatSession

pytestmark = pytest.mark.django_db


def test_a_message_extends_the_session_at_most_once_a_minute(settings):
    session = services.session_create().session
    created_expiry = session.expires_at
    with CaptureQueriesContext(connection) as queries:  # the session was created seconds ago
        services.message_create(session=session, content="first")
    assert not [q for q in queries.captured_queries if q["sql"].startswith('UPDATE "conversations_chatsession"')]
    assert ChatSession.objects.get(pk=session.pk).expires_at == created_expiry

    an_hour_ago = timezone.now() - timedelta(hours=1)
    ChatSession.objects.filter(pk=session.pk).update(last_activity_at=an_hour_ago)
    session.refresh_from_db()
    services.message_create(session=session, content="second")

    session.refresh_from_db()
    assert session.last_activity_at > an_hour_ago + timedelta(minutes=59)
    assert session.expires_at > created_expiry
    assert abs((session.expires_at - timezone.now()).total_seconds() - settings.CHAT_SESSION_TTL_S) < 60
