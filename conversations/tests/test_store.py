"""conversations.store: what the agent reads of a conversation, in as few queries as it can."""
from __future__ import annotations

import pytest

from conversations import services
from conversations.models import Attachment, Message
from conversations.store import DbConversationStore

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation() -> tuple[DbConversationStore, list[int]]:
    """Ten alternating turns, then the message being answered."""
    session = services.session_create().session
    ids = [Message.objects.create(session=session, role="user" if n % 2 == 0 else "assistant", content=f"turn {n}").pk
           for n in range(10)]
    current = Message.objects.create(session=session, role="user", content="now")
    return DbConversationStore(session_id=session.pk, message_id=current.pk), ids


def contents(items) -> list[str]:  # noqa: ANN001
    return [item.content for item in items]


def test_without_a_summary_the_window_is_the_latest_turns_and_every_older_one_is_unfolded(
        conversation, django_assert_num_queries):
    store, _ = conversation
    with django_assert_num_queries(1):
        window, unfolded = store.turns(4)
    assert contents(window) == ["turn 6", "turn 7", "turn 8", "turn 9"]
    assert contents(unfolded) == [f"turn {n}" for n in range(6)]


def test_a_watermark_before_the_window_leaves_only_the_turns_after_it_unfolded(
        conversation, django_assert_num_queries):
    store, ids = conversation
    with django_assert_num_queries(1):
        window, unfolded = store.turns(4, after_id=ids[2])
    assert contents(window) == ["turn 6", "turn 7", "turn 8", "turn 9"]
    assert contents(unfolded) == ["turn 3", "turn 4", "turn 5"]


def test_a_watermark_inside_the_window_leaves_nothing_unfolded_and_the_whole_window(conversation):
    store, ids = conversation
    window, unfolded = store.turns(4, after_id=ids[7])
    assert contents(window) == ["turn 6", "turn 7", "turn 8", "turn 9"]
    assert unfolded == []


def test_a_zero_window_sends_every_unfolded_turn(conversation):
    store, ids = conversation
    assert store.turns(0, after_id=ids[7]) == ([], [item for item in store.turns(0)[1] if item.message_id > ids[7]])


def test_a_message_known_to_have_no_attachments_costs_no_query(conversation, django_assert_num_queries):
    store, _ = conversation
    quiet = DbConversationStore(session_id=store.session_id, message_id=store.message_id, has_attachments=False)
    with django_assert_num_queries(0):
        assert quiet.attachments() == []
    Attachment.objects.create(session_id=store.session_id, message_id=store.message_id, original_name="a.txt",
                              content_type="text", size=1, text="hello", status="ready")
    assert [a.name for a in store.attachments()] == ["a.txt"]
