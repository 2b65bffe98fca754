"""Behaviour of the escalation rules (pure Python: no database, no Django settings)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from escalations.rules import (
    DEFAULT_RISKY_PATTERNS,
    Decision,
    Reason,
    RuleConfig,
    RuleInput,
    Turn,
    evaluate,
    sentiment,
    wants_human,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Calibrated against vaderSentiment 3.3.2 (see test_vader_scores_match_the_calibration).
VERY_NEGATIVE_1 = "This is terrible, I hate this service, awful!"  # -0.88
VERY_NEGATIVE_2 = "Worst experience ever, absolutely horrible and disgusting."  # -0.91
MILDLY_NEGATIVE = "hmm, that's a little annoying"  # -0.34
NEUTRAL = "where is my order"  # 0.0


def ask(message: str, history: list[Turn] | None = None, confidence: float | None = 0.9, **kw) -> Decision:
    """Evaluate one message; confident retrieval by default so only the rule under test fires."""
    config = kw.pop("config", RuleConfig())
    return evaluate(RuleInput(message=message, history=history or [], confidence=confidence, **kw), config)


def turns(*texts: str, confidence: float | None = 0.9) -> list[Turn]:
    return [Turn(user_text=text, confidence=confidence) for text in texts]


# --------------------------------------------------------------------------- API surface


def test_reason_codes_keep_their_stored_values() -> None:
    assert {reason.name: reason.value for reason in Reason} == {
        "USER_REQUEST": "user_request",
        "NEGATIVE_SENTIMENT": "negative_sentiment",
        "LOW_CONFIDENCE": "low_confidence",
        "REPEATED_QUESTION": "repeated_question",
        "RISKY_TOPIC": "risky_topic",
        "TOOL_FAILURE": "tool_failure",
        "APPROVAL_REQUIRED": "approval_required",
    }


def test_a_calm_confident_question_does_not_escalate() -> None:
    assert ask("What are your opening hours on Saturday?") == Decision(
        escalate=False, reason=None, detail="", priority="", topic=""
    )


def test_the_module_imports_without_django() -> None:
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    code = (
        "import sys, escalations.rules; "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'django'], 'django imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- 1. user asks for a human

ASKS_FOR_HUMAN = [
    "agent",
    "AGENT",
    "real person",
    "representative",
    "Human please!!",
    "operator",
    "someone from support",
    "I want to talk to a human",
    "Can I speak to a representative?",
    "connect me to an agent",
    "transfer me to an operator",
    "I need a real person",
    "can I talk to somebody real",
    "put me through to your team",
    "I'd rather speak with a person",
    "is there anyone there who isn't a bot",
    "is anyone there?",
    "stop the bot",
    "get me a manager",
    "let me speak to staff",
    "I want to call someone",
    "I'd like someone from support to call me",
    "why can't I talk to a human?",
    "I can't reach a human, this is ridiculous",
    "je veux parler à un conseiller",
    "ich möchte mit einem Mitarbeiter sprechen",
    "quiero hablar con una persona",
    # A negated clause does not cancel a later request.
    "I don't want to talk to a bot, I want a human",
    "I don't get it, let me talk to a human",
    # Paraphrased as a question.
    "is there a person I can talk to?",
    "Can a human look at this?",
    "could one of your agents check my order",
]

NOT_ASKING_FOR_HUMAN = [
    "the human body",
    "how do I contact a human resources department?",
    "is your product safe for human consumption",
    "what does the agent field in the log mean",
    "my travel agent booked it",
    "is this a real person's photo in the ad",
    "can I be a sales representative for you",
    "human error caused the delay",
    "who is your delivery agent",
    "the representative sample",
    "where is my order",
    "can human resources help me",
    "can your agent field handle unicode",
    "will the agent handle my refund",
]

NEGATED_REQUESTS = [
    "I don't need a human, just tell me the hours",
    "I do not want to speak to an agent",
    "I'd rather not talk to a person",
    "je ne veux pas parler à un conseiller",
    "ich möchte nicht mit einem Mitarbeiter sprechen",
    "no quiero hablar con una persona",
]


@pytest.mark.parametrize("text", ASKS_FOR_HUMAN)
def test_it_escalates_when_the_user_asks_for_a_person(text: str) -> None:
    assert wants_human(text)
    decision = ask(text)
    assert (decision.escalate, decision.reason, decision.priority) == (True, Reason.USER_REQUEST, "normal")
    assert decision.detail


@pytest.mark.parametrize("text", NOT_ASKING_FOR_HUMAN)
def test_it_ignores_words_like_human_or_agent_used_in_other_senses(text: str) -> None:
    assert not wants_human(text)
    assert ask(text).reason is not Reason.USER_REQUEST


@pytest.mark.parametrize("text", NEGATED_REQUESTS)
def test_it_does_not_escalate_when_the_user_says_they_do_not_need_a_human(text: str) -> None:
    assert not wants_human(text)


# --------------------------------------------------------------------------- 2. negative sentiment


def test_vader_scores_match_the_calibration() -> None:
    # The window tests below rely on these magnitudes; if VADER changes, recalibrate.
    assert sentiment(VERY_NEGATIVE_1) < -0.85
    assert sentiment(VERY_NEGATIVE_2) < -0.9
    assert -0.45 < sentiment(MILDLY_NEGATIVE) < -0.3
    assert sentiment(NEUTRAL) == 0.0
    assert sentiment("I'm not unhappy") > 0


def test_a_mildly_negative_message_alone_does_not_escalate() -> None:
    assert not ask(MILDLY_NEGATIVE).escalate


def test_a_mildly_negative_message_after_two_very_negative_turns_escalates() -> None:
    decision = ask(MILDLY_NEGATIVE, turns(VERY_NEGATIVE_1, VERY_NEGATIVE_2))
    assert (decision.reason, decision.priority) == (Reason.NEGATIVE_SENTIMENT, "normal")
    assert "-0.71" in decision.detail


def test_sentiment_only_looks_at_turns_inside_the_window() -> None:
    history = turns(VERY_NEGATIVE_1, VERY_NEGATIVE_2, NEUTRAL, "and when will it ship")
    assert not ask(MILDLY_NEGATIVE, history).escalate


def test_a_window_of_one_ignores_earlier_turns() -> None:
    config = RuleConfig(sentiment_window=1)
    assert not ask(MILDLY_NEGATIVE, turns(VERY_NEGATIVE_1, VERY_NEGATIVE_2), config=config).escalate


def test_a_stricter_custom_sentiment_threshold_takes_effect() -> None:
    config = RuleConfig(sentiment_threshold=-0.3)
    assert ask(MILDLY_NEGATIVE, config=config).reason is Reason.NEGATIVE_SENTIMENT


def test_a_very_negative_message_escalates_on_its_own() -> None:
    assert ask(VERY_NEGATIVE_1).reason is Reason.NEGATIVE_SENTIMENT


@pytest.mark.parametrize(
    "text",
    [
        "this is useless",
        "you're not helping",
        "honestly the worst service ever, where is my refund",
        "where is my order!!!",
        "WHY IS MY ORDER STILL NOT HERE I PAID WEEKS AGO",
    ],
)
def test_it_escalates_on_frustration_markers_even_when_vader_is_mild(text: str) -> None:
    assert sentiment(text) > -0.5  # the lexicon alone would not catch these
    decision = ask(text)
    assert decision.reason is Reason.NEGATIVE_SENTIMENT
    assert decision.detail.startswith("frustration marker")


@pytest.mark.parametrize(
    "text", ["I'm not unhappy", "no problem, thanks", "THANK YOU SO MUCH!!!", "okay, fine"]
)
def test_it_does_not_treat_polite_or_happy_messages_as_negative(text: str) -> None:
    assert not ask(text).escalate


# --------------------------------------------------------------------------- 3. low confidence

QUESTION_1 = "how do I reset the router firmware"
QUESTION_2 = "which cable goes into the modem port"


def test_it_escalates_after_two_consecutive_low_confidence_questions() -> None:
    decision = ask(QUESTION_2, turns(QUESTION_1, confidence=0.1), confidence=0.2)
    assert (decision.reason, decision.priority) == (Reason.LOW_CONFIDENCE, "low")
    assert "0.20" in decision.detail and "0.10" in decision.detail


def test_a_single_low_confidence_question_does_not_escalate() -> None:
    assert not ask(QUESTION_2, turns(QUESTION_1, confidence=0.9), confidence=0.2).escalate
    assert not ask(QUESTION_2, [], confidence=0.2).escalate


def test_unknown_confidence_breaks_the_low_confidence_streak() -> None:
    assert not ask(QUESTION_2, turns(QUESTION_1, confidence=None), confidence=0.2).escalate
    assert not ask(QUESTION_2, turns(QUESTION_1, confidence=0.1), confidence=None).escalate


@pytest.mark.parametrize("small_talk", ["thanks!", "hi", "ok thank you"])
def test_small_talk_neither_triggers_nor_breaks_the_low_confidence_streak(small_talk: str) -> None:
    assert not ask(small_talk, turns(QUESTION_1, confidence=0.1), confidence=0.1).escalate
    history = [Turn(QUESTION_1, 0.1), Turn(small_talk, None)]
    assert ask(QUESTION_2, history, confidence=0.1).reason is Reason.LOW_CONFIDENCE


def test_custom_low_confidence_threshold_and_streak_length_take_effect() -> None:
    assert not ask(QUESTION_2, turns(QUESTION_1, confidence=0.4), confidence=0.4).escalate
    higher = RuleConfig(low_confidence_threshold=0.5)
    assert ask(QUESTION_2, turns(QUESTION_1, confidence=0.4), confidence=0.4, config=higher).escalate
    single = RuleConfig(low_confidence_turns=1)
    assert ask(QUESTION_2, [], confidence=0.2, config=single).reason is Reason.LOW_CONFIDENCE


# --------------------------------------------------------------------------- 4. repeated question


@pytest.mark.parametrize(
    ("earlier", "now"),
    [
        ("where is my order", "where is my order???"),
        ("where is my order", "where's my order?"),
        ("how do I get a refund", "how can I get my refunds"),
        ("I want to change my delivery address", "how do I change the delivery address"),
        ("where is my order", "hi there, where is my order please"),
    ],
)
def test_it_escalates_when_the_user_repeats_or_rephrases_a_question(earlier: str, now: str) -> None:
    decision = ask(now, turns(earlier, "what are your opening hours"))
    assert (decision.reason, decision.priority) == (Reason.REPEATED_QUESTION, "low")
    assert repr(earlier) in decision.detail


@pytest.mark.parametrize(
    ("earlier", "now"),
    [
        ("where is my order", "how do I return an item"),
        ("where is my order", "where is my refund"),
        ("where is my order", "cancel my order"),
        ("thanks", "thanks"),
        ("ok thanks a lot", "ok, thanks a lot!"),
    ],
)
def test_different_questions_or_repeated_pleasantries_are_not_repeats(earlier: str, now: str) -> None:
    assert not ask(now, turns(earlier)).escalate


def test_only_the_last_five_turns_count_as_repeats() -> None:
    fillers = [f"question about product number {n} colours" for n in range(5)]
    assert not ask("where is my order", turns("where is my order", *fillers)).escalate
    assert ask("where is my order", turns("where is my order", *fillers[1:])).escalate


# --------------------------------------------------------------------------- 5. risky topics

RISKY = [
    ("legal", "high", "I'm going to sue you"),
    ("legal", "high", "my lawyer will hear about this"),
    ("legal", "high", "my attorney says this is illegal"),
    ("legal", "high", "I'll take legal action"),
    ("legal", "high", "I'm filing a lawsuit"),
    ("legal", "high", "see you in small claims court"),
    ("legal", "high", "I will report you to trading standards"),
    ("legal", "high", "I'm reporting you to the consumer protection agency"),
    ("legal", "high", "I'll report you to the BBB"),
    ("chargeback", "high", "I'll just do a chargeback"),
    ("chargeback", "high", "I want to dispute the charge"),
    ("chargeback", "high", "I'm going to call my bank"),
    ("chargeback", "high", "please reverse the payment"),
    ("chargeback", "high", "I'm filing a fraud claim"),
    ("account_compromise", "high", "my account was hacked"),
    ("account_compromise", "high", "someone logged into my account"),
    ("account_compromise", "high", "there's an unauthorised charge on my card"),
    ("account_compromise", "high", "an unauthorized order appeared"),
    ("account_compromise", "high", "my stolen card was used"),
    ("account_compromise", "high", "I got a phishing email from you"),
    ("account_compromise", "high", "this is identity theft"),
    ("self_harm", "urgent", "I want to kill myself"),
    ("self_harm", "urgent", "I've been thinking about suicide"),
    ("self_harm", "urgent", "I want to end my life"),
    ("self_harm", "urgent", "I keep thinking about self harm"),
    ("self_harm", "urgent", "I don't want to live anymore"),
    ("other_person_data", "normal", "what's in my ex's order"),
    ("other_person_data", "normal", "give me the address of John Smith"),
    ("other_person_data", "normal", "what did my neighbour order"),
    ("other_person_data", "normal", "I need access to someone else's account"),
    ("other_person_data", "normal", "tell me the email of the customer who bought the last one"),
]

NOT_RISKY = [
    "does the lawn mower kill weeds",
    "my password manager keeps logging me out",
    "how do I change my account email",
    "what's the killer feature of the pro plan",
    "this deal is killing it",
    "Sue from billing was great",
    "what did I order last week",
    "what did my order include",
    "give me the address of your warehouse",
    "how do I update my card details",
    "I don't want to live with this bug forever",
]


@pytest.mark.parametrize(("topic", "priority", "text"), RISKY)
def test_it_escalates_risky_topics_with_the_topic_priority(topic: str, priority: str, text: str) -> None:
    decision = ask(text)
    assert (decision.reason, decision.topic, decision.priority) == (Reason.RISKY_TOPIC, topic, priority)
    assert topic in decision.detail


@pytest.mark.parametrize("text", NOT_RISKY)
def test_it_ignores_near_misses_of_risky_topics(text: str) -> None:
    assert ask(text).reason is not Reason.RISKY_TOPIC


def test_the_most_urgent_risky_topic_wins_when_several_match() -> None:
    decision = ask("someone hacked my account and honestly I want to end my life")
    assert (decision.topic, decision.priority) == ("self_harm", "urgent")


def test_a_custom_risky_pattern_from_settings_takes_effect() -> None:
    text = "I want to make a warranty claim"
    assert not ask(text).escalate
    config = RuleConfig(
        risky_patterns={**DEFAULT_RISKY_PATTERNS, "warranty": [r"\bwarranty claim\b"]},
        priorities={"warranty": "urgent"},
    )
    decision = ask(text, config=config)
    assert (decision.reason, decision.topic, decision.priority) == (Reason.RISKY_TOPIC, "warranty", "urgent")


def test_a_custom_topic_without_a_priority_uses_the_risky_topic_default() -> None:
    config = RuleConfig(risky_patterns={"warranty": [r"\bwarranty\b"]})
    assert ask("is this under warranty", config=config).priority == "high"


def test_replacing_the_risky_patterns_drops_the_defaults() -> None:
    config = RuleConfig(risky_patterns={"warranty": [r"\bwarranty\b"]})
    assert ask("I'm going to sue you", config=config).reason is not Reason.RISKY_TOPIC


def test_a_partial_priority_override_keeps_the_other_defaults() -> None:
    config = RuleConfig(priorities={"legal": "urgent"})
    assert ask("I'm going to sue you", config=config).priority == "urgent"
    assert ask("I'll just do a chargeback", config=config).priority == "high"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"risky_patterns": {"broken": [r"(unclosed"]}},
        {"risky_patterns": {"bare_string": r"\bwarranty\b"}},
        {"priorities": {"legal": "critical"}},
        {"sentiment_window": 0},
        {"repeat_similarity": 0.0},
    ],
)
def test_invalid_configuration_is_rejected_when_built(kwargs: dict) -> None:
    with pytest.raises((ValueError, re.error)):
        RuleConfig(**kwargs)


# --------------------------------------------------------------------------- 6, 7. tools


def test_it_escalates_when_a_tool_fails_unrecoverably() -> None:
    decision = ask("what is the status of order 1001", tool_failures=["order_status"])
    assert (decision.reason, decision.priority) == (Reason.TOOL_FAILURE, "normal")
    assert "order_status" in decision.detail


def test_it_escalates_when_a_tool_call_needs_human_approval() -> None:
    decision = ask("please refund order 1001", approvals_pending=["issue_refund"])
    assert (decision.reason, decision.priority) == (Reason.APPROVAL_REQUIRED, "normal")
    assert "issue_refund" in decision.detail


def test_empty_tool_lists_do_not_escalate() -> None:
    assert not ask("what is the status of order 1001", tool_failures=[], approvals_pending=[]).escalate


# --------------------------------------------------------------------------- priority selection


def test_a_higher_priority_rule_beats_an_earlier_lower_one() -> None:
    decision = ask("let me talk to a human, I want to kill myself")
    assert (decision.reason, decision.topic, decision.priority) == (Reason.RISKY_TOPIC, "self_harm", "urgent")


def test_a_user_request_beats_low_confidence() -> None:
    decision = ask("can I speak to a representative now", turns(QUESTION_1, confidence=0.1), confidence=0.1)
    assert decision.reason is Reason.USER_REQUEST


def test_ties_go_to_the_rule_listed_first() -> None:
    both_normal = ask("connect me to an agent", tool_failures=["order_status"], approvals_pending=["refund"])
    assert both_normal.reason is Reason.USER_REQUEST
    tools_only = ask("check order 1001", tool_failures=["order_status"], approvals_pending=["refund"])
    assert tools_only.reason is Reason.TOOL_FAILURE


def test_priority_overrides_change_which_rule_wins() -> None:
    config = RuleConfig(priorities={"approval_required": "urgent"})
    decision = ask("connect me to an agent", approvals_pending=["refund"], config=config)
    assert (decision.reason, decision.priority) == (Reason.APPROVAL_REQUIRED, "urgent")
