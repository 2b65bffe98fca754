"""The running summary is folded incrementally: each update sees only the previous summary and new turns."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agent.fake_llm import Behaviour
from agent.generation import SUMMARY_PROMPT
from conversations.models import Memory, Message

pytestmark = pytest.mark.django_db

PREVIOUS = "PREVIOUS-SUMMARY-MARKER"


def question(n: int) -> str:
    return f"Question Q{n:02d}: how long does a refund take?"


def ask(chat, numbers: range) -> None:
    for n in numbers:
        chat.ask(question(n))


def summary_requests(llm) -> list[str]:
    """The transcript sent with each summary request, in order."""
    return [r["messages"][1]["content"] for r in llm.requests if r["messages"][0]["content"] == SUMMARY_PROMPT]


def summary_row(chat) -> Memory:
    return Memory.objects.get(session=chat.session, kind="summary")


def mentioned(text: str, numbers: range) -> list[int]:
    return [n for n in numbers if f"Q{n:02d}" in text]


@pytest.fixture
def batches(settings, llm):
    """Window of 2 messages (one exchange); the LLM summarises every 4 customer turns."""
    settings.MEMORY_MAX_HISTORY, settings.MEMORY_SUMMARY_EVERY = 2, 4
    llm.default = Behaviour(kind="text", text="Noted.")
    return llm


def test_the_llm_summarises_once_per_batch_of_turns_not_on_every_turn(chat, help_centre, batches):
    ask(chat, range(1, 15))  # the first 2 never leave the window; 12 customer turns do
    assert len(summary_requests(batches)) == 12 // 4
    assert len(batches.requests) == 14 + 3
    row = summary_row(chat)
    # The third batch folded Q09–Q12 and their replies; Q13 and its reply are in the window.
    q12 = Message.objects.get(session=chat.session, content=question(12))
    last_folded = Message.objects.filter(session=chat.session, role="assistant", id__gt=q12.pk).earliest("id")
    assert row.folded_until == last_folded.pk


def test_each_summary_request_has_the_previous_summary_and_only_the_new_turns(chat, help_centre, batches):
    ask(chat, range(1, 7))
    [first] = summary_requests(batches)
    assert mentioned(first, range(1, 7)) == [1, 2, 3, 4] and "Summary so far" not in first
    Memory.objects.filter(session=chat.session, kind="summary").update(content=PREVIOUS)
    ask(chat, range(7, 11))
    [_, second] = summary_requests(batches)
    assert PREVIOUS in second
    assert mentioned(second, range(1, 11)) == [5, 6, 7, 8], "folded turns are not sent again"
    assert summary_row(chat).content == "Noted."


def test_older_turns_not_yet_summarised_stay_in_the_prompt_verbatim(chat, help_centre, batches):
    ask(chat, range(1, 6))  # Q01–Q03 left the window, too few for a summary
    assert summary_requests(batches) == [] and not Memory.objects.filter(kind="summary").exists()
    said = [m["content"] for m in batches.requests[-1]["messages"] if m["role"] == "user"]
    assert said == [question(n) for n in range(1, 6)]
    ask(chat, range(6, 9))  # Q01–Q04 folded at Q06; Q05–Q06 left the window after it
    messages = batches.requests[-1]["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == [question(n) for n in range(5, 9)]
    assert any(m["role"] == "system" and "Summary of the earlier conversation" in m["content"] for m in messages)


def test_without_an_llm_the_extractive_summary_also_folds_only_new_turns(chat, help_centre, settings):
    settings.MEMORY_MAX_HISTORY = 2
    ask(chat, range(1, 4))
    assert mentioned(summary_row(chat).content, range(1, 4)) == [1]
    Memory.objects.filter(session=chat.session, kind="summary").update(content=PREVIOUS)
    ask(chat, range(4, 6))
    content = summary_row(chat).content
    assert content.startswith(PREVIOUS) and mentioned(content, range(1, 6)) == [2, 3]


def test_an_expired_summary_is_rebuilt_from_all_older_turns(chat, help_centre, batches):
    ask(chat, range(1, 7))
    Memory.objects.filter(session=chat.session, kind="summary").update(
        content=PREVIOUS, expires_at=timezone.now() - timedelta(seconds=1))
    ask(chat, range(7, 8))  # all 5 older turns are unfolded again: enough for a batch
    rebuilt = summary_requests(batches)[-1]
    assert len(summary_requests(batches)) == 2
    assert PREVIOUS not in rebuilt and mentioned(rebuilt, range(1, 8)) == [1, 2, 3, 4, 5]
    row = summary_row(chat)
    assert row.content == "Noted." and row.expires_at > timezone.now()


def test_the_summary_reaches_the_model_once_per_request(chat, help_centre, batches):
    ask(chat, range(1, 7))
    Memory.objects.filter(session=chat.session, kind="summary").update(content=PREVIOUS)
    ask(chat, range(7, 8))
    prompt = "\n".join(m["content"] or "" for m in batches.requests[-1]["messages"])
    assert prompt.count(PREVIOUS) == 1
