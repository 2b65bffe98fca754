"""Fixtures for escalation tests: chats with messages, permissions, captured chat events."""
from __future__ import annotations

from datetime import datetime, timezone as dt_timezone

import pytest

# Django is imported inside the fixtures: test_rules.py must also run with `-p no:django`.

# A Wednesday at 10:00 UTC: inside the default business hours.
WEDNESDAY_10 = datetime(2026, 3, 4, 10, 0, tzinfo=dt_timezone.utc)


@pytest.fixture(autouse=True)
def _team_always_in(request):
    """Tests see a 24/7 team in UTC unless they set business hours themselves."""
    if "django_db_setup" not in request.fixturenames and not request.node.get_closest_marker("django_db"):
        return
    settings = request.getfixturevalue("settings")
    settings.ESCALATION_BUSINESS_HOURS = "24/7"
    settings.ESCALATION_TIME_ZONE = "UTC"
    settings.ESCALATION_HOLIDAYS = []
    settings.ESCALATION_AVG_HANDLE_MIN = 6
    settings.ESCALATION_WEBHOOK_URL = None
    settings.ESCALATION_RESOLVE_STATE = "bot"


@pytest.fixture
def published(monkeypatch) -> list[tuple[str, str, int | None]]:
    """Chat events sent through the channel layer (the I/O edge), as (public id, kind, message id)."""
    sent: list[tuple[str, str, int | None]] = []
    monkeypatch.setattr("supportdesk.events.publish", lambda public_id, kind, message_id: sent.append(
        (str(public_id), kind, message_id)))
    return sent


def make_chat(*texts: str, state: str = "bot", email: str = ""):
    """A chat where the user said `texts`, each answered by the bot."""
    from conversations.models import ChatSession, Message
    from conversations.services import session_create

    session = session_create(email=email).session
    for text in texts:
        question = session.messages.create(role=Message.Role.USER, content=text)
        session.messages.create(role=Message.Role.ASSISTANT, content=f"Answer to: {text}", reply_to=question,
                                confidence=0.2)
    ChatSession.objects.filter(pk=session.pk).update(state=state)
    session.refresh_from_db()
    return session


@pytest.fixture
def chat(db):
    return make_chat("Where is my order A-10042?", "I still have not received order A-10042, I want a human")


def grant(user, *codenames: str):
    """Give `user` escalation permissions and return a fresh instance (permission caches are per instance)."""
    from django.contrib.auth.models import Permission

    perms = Permission.objects.filter(content_type__app_label="escalations", codename__in=codenames)
    assert perms.count() == len(codenames), codenames
    user.user_permissions.add(*perms)
    return type(user).objects.get(pk=user.pk)


AGENT_PERMS = ("view_escalation", "change_escalation", "reply_escalation")


@pytest.fixture
def agent(bob):
    """bob, a support agent who may work the queue and reply (but not take over others' chats)."""
    bob.first_name, bob.last_name = "Bob", "Baker"
    bob.save()
    return grant(bob, *AGENT_PERMS)


@pytest.fixture
def dave(db):
    """A second support agent with the same permissions as bob."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("dave", "dave@example.com", "dave-password", is_staff=True,
                                                first_name="Dave")
    return grant(user, *AGENT_PERMS)
