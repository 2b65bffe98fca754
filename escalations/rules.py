"""Rules that decide when a human must take over a support conversation.

Pure Python on purpose: no Django imports, so the rules can be unit-tested and
benchmarked without settings.  The caller builds a :class:`RuleConfig` (usually
from Django settings) and passes it to :func:`evaluate`.

Each rule is a small function ``(RuleInput, RuleConfig) -> Decision | None``.
:func:`evaluate` runs all of them and keeps the highest-priority decision;
ties go to the rule listed first in ``_RULES``.

Text matching works on a *normalised* form of the message: lower case, curly
quotes straightened and accents removed, so patterns can be written in plain
ASCII ("je veux parler a un conseiller", "ich mochte ...").
"""

from __future__ import annotations

import enum
import functools
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_PRIORITIES",
    "DEFAULT_RISKY_PATTERNS",
    "PRIORITY_LEVELS",
    "NO_ESCALATION",
    "Decision",
    "Reason",
    "RuleConfig",
    "RuleInput",
    "Turn",
    "evaluate",
    "sentiment",
    "wants_human",
]


class Reason(str, enum.Enum):
    """Why a conversation was handed to a human (stored, so values are stable)."""

    USER_REQUEST = "user_request"
    NEGATIVE_SENTIMENT = "negative_sentiment"
    LOW_CONFIDENCE = "low_confidence"
    REPEATED_QUESTION = "repeated_question"
    RISKY_TOPIC = "risky_topic"
    TOOL_FAILURE = "tool_failure"
    APPROVAL_REQUIRED = "approval_required"


PRIORITY_LEVELS: tuple[str, ...] = ("low", "normal", "high", "urgent")

DEFAULT_PRIORITIES: Mapping[str, str] = MappingProxyType(
    {
        "self_harm": "urgent",
        "account_compromise": "high",
        "legal": "high",
        "chargeback": "high",
        "other_person_data": "normal",
        Reason.USER_REQUEST.value: "normal",
        Reason.NEGATIVE_SENTIMENT.value: "normal",
        Reason.LOW_CONFIDENCE.value: "low",
        Reason.REPEATED_QUESTION.value: "low",
        Reason.RISKY_TOPIC.value: "high",
        Reason.TOOL_FAILURE.value: "normal",
        Reason.APPROVAL_REQUIRED.value: "normal",
    }
)

# Patterns run case-insensitively against normalised text (see module docstring).
DEFAULT_RISKY_PATTERNS: Mapping[str, Sequence[str]] = MappingProxyType(
    {
        "legal": (
            r"\b(?:lawyers?|attorneys?|solicitors?)\b",
            r"\blaw ?suits?\b",
            r"\blegal (?:action|proceedings|steps|case)\b",
            r"\bsmall claims\b",
            r"\bclass action\b",
            # "sue" alone would also match the name Sue, so require an object or intent.
            r"\bsu(?:e|ing) (?:you|u|your|the company|this company|them)\b",
            r"\b(?:will|going to|gonna|i'll|i will|i'm going to) sue\b",
            r"\btak(?:e|ing) (?:you|this|it|them) to court\b",
            r"\breport(?:ing)? (?:you|your company|this|them|it)\b[^.?!]{0,40}?"
            r"\b(?:consumer|bbb|better business bureau|trading standards|ftc|ombudsman"
            r"|regulator|cfpb|attorney general)",
        ),
        "chargeback": (
            r"\bcharge ?-?backs?\b",
            r"\bdispute (?:the |this |that |a |my )?(?:charge|transaction|payment)s?\b",
            r"\b(?:call|contact|ring|phone) my (?:bank|card issuer|credit card company)\b",
            r"\breverse (?:the |this |that |my )?(?:payment|charge|transaction)s?\b",
            r"\bfraud (?:claim|report|case|dispute)\b",
        ),
        "account_compromise": (
            r"\b(?:hacked|hacker|hackers|hacking into)\b",
            r"\b(?:someone|somebody|a stranger)(?: else)? (?:has |had )?"
            r"(?:logged|signed|got|gotten|broke|broken) in(?:to)? (?:to )?my account\b",
            r"\b(?:someone|somebody)(?: else)? (?:is |has been |has |had )?"
            r"(?:using|accessed|accessing|changed) my (?:account|password|card)\b",
            r"\bunauthori[sz]ed (?:charges?|orders?|purchases?|transactions?|payments?"
            r"|access|logins?|activity)\b",
            r"\bstolen (?:card|credit card|debit card|identity|account|password)\b",
            r"\b(?:card|account|identity|password) (?:was |has been |got |is )?stolen\b",
            r"\bphish(?:ing|ed)?\b",
            r"\bidentity theft\b",
            r"\baccount (?:was |has been |is |got )?compromised\b",
            r"\b(?:didn't|did not|never) (?:make|place|authori[sz]e) (?:this|that|these|those|the)"
            r" (?:order|purchase|charge|payment|transaction)s?\b",
        ),
        "self_harm": (
            r"\bsuicid(?:e|al)\b",
            r"\bkill(?:ing)? myself\b",
            r"\bend(?:ing)? my (?:own )?life\b",
            r"\bend it all\b",
            r"\bself[- ]?harm(?:ing)?\b",
            r"\bhurt(?:ing)? myself\b",
            r"\bwant to die\b",
            r"\bbetter off dead\b",
            r"\bno reason to live\b",
            # "don't want to live with this bug" is hyperbole about a product, not a crisis.
            r"\b(?:don't|do not|no longer) want to (?:live|be alive)\b"
            r"(?! (?:with|in|without|on|near|at|there|here|like)\b)",
        ),
        "other_person_data": (
            r"\bmy (?:ex|ex-?(?:wife|husband|partner|girlfriend|boyfriend)|neighbou?r|boss"
            r"|colleague|co-?worker|roommate|flatmate|landlord|tenant)'?s (?:orders?|account"
            r"|address|email|phone|number|details|purchases?|history|location|card|data|info)\b",
            r"\bsomeone else'?s (?:account|orders?|address|details|email|data|information"
            r"|info|card|purchases?)\b",
            r"\banother (?:customer|person|user)'?s (?:account|orders?|address|details|email"
            r"|data|information|info)\b",
            r"\b(?:give|send|tell|show) me (?:the|their|his|her) (?:home |delivery |shipping )?"
            r"(?:address|email|e-mail|phone number|number|contact details|details) (?:of|for)"
            r" (?!(?:your|the) (?:store|shop|warehouse|office|company|returns?|head|customer service)"
            r"|you\b|returns?\b)",
            r"\b(?:email|e-mail|address|phone number|name|details) of the (?:customer|person"
            r"|user|buyer|guy|woman|man) who\b",
            # "what did <someone> order" but not "what did I order" / "what did my order include".
            r"\bwhat did (?!(?:i|we|you|it)\b)(?!(?:my|our|your|the|this|that) (?:order|purchase"
            r"|package|parcel|payment)\b)(?:[a-z']+ ){1,3}?(?:order|buy|purchase)\b",
        ),
    }
)

_GENERIC_RISKY_KEY = Reason.RISKY_TOPIC.value


@dataclass(frozen=True)
class RuleConfig:
    """Tunable thresholds, risky-topic regexes and priorities for :func:`evaluate`."""

    sentiment_threshold: float = -0.5
    sentiment_window: int = 3
    low_confidence_threshold: float = 0.35
    low_confidence_turns: int = 2
    repeat_similarity: float = 0.8
    risky_patterns: Mapping[str, Sequence[str]] = field(default_factory=lambda: DEFAULT_RISKY_PATTERNS)
    priorities: Mapping[str, str] = field(default_factory=lambda: DEFAULT_PRIORITIES)
    _compiled: tuple[tuple[str, tuple[re.Pattern[str], ...]], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        _validate_numbers(self)
        _validate_priorities(self.priorities)
        # Compile once here so a bad regex from settings fails at startup, not mid-chat.
        object.__setattr__(self, "_compiled", _compile_patterns(self.risky_patterns))


@dataclass(frozen=True)
class Turn:
    """One past exchange (oldest first in a history)."""

    user_text: str
    confidence: float | None


@dataclass(frozen=True)
class RuleInput:
    """Everything the rules look at for one new user message."""

    message: str
    history: Sequence[Turn]
    confidence: float | None
    tool_failures: Sequence[str] = ()
    approvals_pending: Sequence[str] = ()


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`evaluate`; ``priority`` is "" when not escalating."""

    escalate: bool
    reason: Reason | None
    detail: str
    priority: str
    topic: str = ""


NO_ESCALATION = Decision(escalate=False, reason=None, detail="", priority="")


# --------------------------------------------------------------------------- config


def _validate_numbers(config: RuleConfig) -> None:
    if not -1.0 <= config.sentiment_threshold <= 1.0:
        raise ValueError("sentiment_threshold must be within [-1, 1]")
    if config.sentiment_window < 1 or config.low_confidence_turns < 1:
        raise ValueError("sentiment_window and low_confidence_turns must be >= 1")
    if not 0.0 < config.repeat_similarity <= 1.0:
        raise ValueError("repeat_similarity must be within (0, 1]")


def _validate_priorities(priorities: Mapping[str, str]) -> None:
    bad = {key: value for key, value in priorities.items() if value not in PRIORITY_LEVELS}
    if bad:
        raise ValueError(f"unknown priority level(s) {bad}; use one of {PRIORITY_LEVELS}")


def _compile_patterns(
    patterns: Mapping[str, Sequence[str]],
) -> tuple[tuple[str, tuple[re.Pattern[str], ...]], ...]:
    # A bare string would otherwise be iterated character by character.
    for topic, regexes in patterns.items():
        if isinstance(regexes, str):
            raise ValueError(f"risky_patterns[{topic!r}] must be a list of regexes, not a string")
    return tuple(
        (topic, tuple(re.compile(rx, re.IGNORECASE) for rx in regexes))
        for topic, regexes in patterns.items()
    )


def _priority_for(key: str, config: RuleConfig, fallback: str = "normal") -> str:
    # A partial override in settings should not silently drop the other defaults.
    return config.priorities.get(key) or DEFAULT_PRIORITIES.get(key) or fallback


def _decision(reason: Reason, detail: str, config: RuleConfig, topic: str = "") -> Decision:
    if topic:
        generic = _priority_for(_GENERIC_RISKY_KEY, config)
        priority = _priority_for(topic, config, fallback=generic)
    else:
        priority = _priority_for(reason.value, config)
    return Decision(escalate=True, reason=reason, detail=detail, priority=priority, topic=topic)


# --------------------------------------------------------------------------- text helpers


def _normalise(text: str) -> str:
    """Lower-case, straighten quotes, drop accents and collapse whitespace."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_ish = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return re.sub(r"\s+", " ", ascii_ish.lower()).strip()


def _words(text: str) -> list[str]:
    """Plain word tokens of normalised text, with English contractions expanded."""
    text = re.sub(r"n't\b", " not", _normalise(text))
    text = re.sub(r"'(?:s|re|ve|ll|d|m)\b", "", text)
    return re.findall(r"[a-z0-9]+", text)


_SMALL_TALK = frozenset(
    """
    a an the hi hey hello hiya yo there thanks thank thx ty cheers you so very much lot
    ok okay k kk yes yeah yep no nope sure great cool nice good fine perfect awesome
    please pls bye goodbye morning afternoon evening night lol haha ah oh hmm well all
    that it is alright right got
    """.split()
)


def _content_word_count(text: str) -> int:
    """Words that are not greetings/pleasantries; fewer than 3 means small talk."""
    return sum(1 for word in _words(text) if word not in _SMALL_TALK)


def _is_small_talk(text: str) -> bool:
    return _content_word_count(text) < 3


# --------------------------------------------------------------------------- 1. wants a human

_DET = (
    r"(?:(?:a|an|the|some|any|your|my|one of your|one of the|a member of(?: your| the)?"
    r"|member of(?: your| the)?)\s+)?"
)
_ADJ = (
    r"(?:(?:real|actual|live|proper|genuine|human|flesh and blood|customer|service|support"
    r"|senior|other|qualified|competent)\s+)*"
)
_SOMEONE_SPECIFIC = (
    r"(?:someone|somebody|anyone|anybody) (?:real|human|from (?:support|your (?:team|staff"
    r"|company|support team)|the (?:support )?team|staff|customer service))"
)
_STRONG_NOUN = (
    rf"(?:{_SOMEONE_SPECIFIC}|humans?|human beings?|persons?|agents?|representatives?|reps?"
    r"|operators?|staff(?: members?)?|employees?|managers?|supervisors?|advisors?|advisers?)"
)
_ANY_NOUN = (
    rf"(?:{_STRONG_NOUN}|someone|somebody|anyone|anybody|people|team|consultants?|colleagues?"
    r"|support|customer service|customer care|specialists?|boss)"
)
# "human resources", "agent field", "representative sample", "a real person's photo"...
_NOT_COMPOUND = (
    r"(?!'s\b|\s+(?:resources?|body|bodies|error|errors|consumption|nature|rights|race|field"
    r"|fields|sample|samples|name|names|photo|picture|image|string|id|header)\b)"
)
_TARGET = rf"{_DET}{_ADJ}{_ANY_NOUN}\b{_NOT_COMPOUND}"
_STRONG_TARGET = rf"{_DET}{_ADJ}{_STRONG_NOUN}\b{_NOT_COMPOUND}"
_BOT = r"(?:chat ?bots?|bots?|robots?|ai|machines?|automated (?:system|assistant|replies|responses))"

# (regex, negatable): a negatable match is ignored when a negator closely precedes it.
_HUMAN_PATTERNS: tuple[tuple[re.Pattern[str], bool], ...] = tuple(
    (re.compile(rx), negatable)
    for rx, negatable in (
        (rf"\b(?:talk(?:ing)?|speak(?:ing)?|chat(?:ting)?)\s+(?:to|with)\s+{_TARGET}", True),
        (
            r"\b(?:transfer|connect|put|pass|hand|forward|send|escalate)\s+(?:me|us|this"
            r"|my (?:case|call|chat|ticket|issue))\s+(?:over\s+|through\s+|on\s+|back\s+)?"
            rf"(?:to|with)\s+{_TARGET}",
            True,
        ),
        (
            r"\b(?:want|need|get me|give me|find me|bring me|demand|request|i'd like"
            r"|i would like|would like|i'd prefer|can i have|can i get|could i have"
            rf"|could i get|may i have)\s+{_STRONG_TARGET}",
            True,
        ),
        (
            r"\b(?:want|need|like|wish|let me|lemme|can i|could i|may i|how (?:do|can|could) i"
            r"|where (?:do|can) i|is it possible to|i'd rather|i would rather|i'd prefer)"
            r"\s+(?:to\s+)?(?:just\s+)?(?:call|phone|ring|contact|reach|email|get hold of"
            rf"|get through to|get in touch with)\s+{_TARGET}",
            True,
        ),
        (
            r"\b(?:can't|cannot|can not|couldn't|could not|unable to)\s+(?:reach|contact"
            rf"|get hold of|get through to|get in touch with|talk to|speak to)\s+{_TARGET}",
            False,
        ),
        (
            r"\b(?:anyone|anybody|someone|somebody|a person|a human)\b[^.?!]{0,25}?"
            rf"\b(?:isn't|is not|who's not|that's not|not)\s+(?:a\s+|an\s+)?{_BOT}\b",
            False,
        ),
        # Questions: "is there a person I can talk to?", "can a human look at this?"
        (
            rf"\b(?:is|are) there {_STRONG_TARGET}\s+(?:(?:that|who)\s+)?(?:i|we)\s+(?:can|could|might)"
            r"\s+(?:talk|speak|chat|write)\b",
            True,
        ),
        (
            rf"\b(?:can|could)\s+{_STRONG_TARGET}\s+(?:please\s+)?(?:look (?:at|into)"
            r"|check|review|help|handle|take (?:a look|over)|call|contact|get back to)\b",
            True,
        ),
        (
            r"\b(?:is|are) (?:there )?(?:anyone|anybody|someone|somebody|a human|any humans"
            r"|a real person|real people|an actual person|a person|an agent)"
            r"(?: there| here| real| alive| available| at all)?$",
            False,
        ),
        (
            r"\b(?:stop|end|quit|enough|bypass|skip|turn off|disable|cancel|no more|done with"
            r"|sick of|tired of|fed up with)\s+(?:with\s+)?(?:the\s+|this\s+|your\s+)?"
            r"(?:(?:talking|chatting) (?:to|with) (?:a |the |this |your )?)?"
            rf"(?:stupid\s+|useless\s+|dumb\s+)?{_BOT}\b",
            False,
        ),
        (
            r"\b(?:don't|dont|do not) want (?:to (?:talk|speak|chat) (?:to|with) )?"
            rf"(?:a |the |your |this |some )?{_BOT}\b",
            False,
        ),
        # French, German and Spanish (accents already stripped by _normalise).
        (
            r"\b(?:parler|discuter|echanger)\s+(?:a|avec)\s+(?:(?:un|une|le|la|l'|des|un vrai"
            r"|une vraie)\s*)?(?:conseiller(?:e)?|humain|personne|agent|operat(?:eur|rice)"
            r"|responsable|quelqu'un|etre humain|representant|interlocuteur)\b",
            True,
        ),
        (
            r"\b(?:passez|passe|mettez)-moi (?:en relation avec )?(?:un|une|le|la)\s+"
            r"(?:conseiller(?:e)?|humain|agent|operat(?:eur|rice)|responsable)\b",
            True,
        ),
        (
            r"\bmit\s+(?:(?:einem|einer|einen|dem|der)\s+(?:echten\s+|richtigen\s+)?)?"
            r"(?:mitarbeiter(?:in)?|menschen|mensch|berater(?:in)?|kundenberater(?:in)?|agenten"
            r"|person|vorgesetzten|jemandem)\b[^.?!]{0,30}?\b(?:sprechen|reden|verbinden"
            r"|verbunden|chatten)\b",
            True,
        ),
        (
            r"\b(?:hablar|comunicarme|charlar|conversar)\s+con\s+(?:(?:un|una|el|la|un ser)\s+)?"
            r"(?:persona|humano|agente|asesor(?:a)?|representante|operador(?:a)?|alguien"
            r"|ser humano|encargado|gerente|supervisor)\b",
            True,
        ),
    )
)

# A message that is little more than the keyword itself: "agent", "Human please!!".
_BARE_REQUEST = re.compile(
    r"^(?:(?:i want|i need|give me|get me|please|pls|a|an|the|real|live|actual|human"
    r"|speak to|talk to)\s+)*(?:(?:human|humans|agent|live agent|representative|rep|operator"
    r"|real person|person|someone from support|customer service|manager|supervisor)\s*)+"
    r"(?:\s*(?:please|pls|now|asap|thanks|thank you))*$"
)
_NEGATOR = re.compile(
    r"\b(?:don't|dont|do not|doesn't|does not|didn't|did not|not|never|no need|wouldn't"
    r"|ne|n'|pas|nicht|kein|keine|keinen|no quiero|no necesito|no deseo)\b|\bn'"
)
# Clauses let "I don't need a human, just tell me the hours" stay negated while
# "I don't get it, let me talk to a human" still fires in its second clause.
_CLAUSE_SPLIT = re.compile(r"[,;.!?:]+|\s(?:but|however|just|instead)\s")
_NEGATION_WINDOW_WORDS = 4


def _is_negated(clause: str, start: int) -> bool:
    words = clause[:start].split()
    preceding = words[max(0, len(words) - _NEGATION_WINDOW_WORDS) :]
    return bool(_NEGATOR.search(" ".join(preceding)))


def _clause_request(clause: str) -> str | None:
    for pattern, negatable in _HUMAN_PATTERNS:
        for match in pattern.finditer(clause):
            if not (negatable and _is_negated(clause, match.start())):
                return match.group(0)
    return None


def _human_request_phrase(text: str) -> str | None:
    """The phrase showing the user asks for a human, or None."""
    normalised = _normalise(text)
    bare = re.sub(r"[^\w' ]+", " ", normalised)
    if _BARE_REQUEST.match(re.sub(r"\s+", " ", bare).strip()):
        return normalised
    for clause in _CLAUSE_SPLIT.split(normalised):
        phrase = _clause_request(clause.strip())
        if phrase:
            return phrase
    return None


def wants_human(text: str) -> bool:
    """True when the user asks to be handed to a person (EN, and a little FR/DE/ES)."""
    return _human_request_phrase(text) is not None


def _rule_user_request(inp: RuleInput, config: RuleConfig) -> Decision | None:
    phrase = _human_request_phrase(inp.message)
    if phrase is None:
        return None
    return _decision(Reason.USER_REQUEST, f"user asked for a human: {phrase!r}", config)


# --------------------------------------------------------------------------- 2. sentiment


@functools.lru_cache(maxsize=1)
def _analyzer() -> SentimentIntensityAnalyzer:
    # Deferred: loading the lexicon takes a moment and most imports never need it.
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment(text: str) -> float:
    """VADER compound score of ``text`` in [-1, 1] (negative means unhappy)."""
    return float(_analyzer().polarity_scores(text)["compound"])


_FRUSTRATION_PHRASES = re.compile(
    r"\b(?:this is|that's|that is|you are|you're|u r|ur|so|completely|totally) "
    r"(?:useless|pointless|ridiculous|pathetic|a joke|a waste of time)\b"
    r"|\byou(?:'re| are) not help(?:ing|ful)\b|\byou aren't help(?:ing|ful)\b"
    r"|\bnot helping at all\b|\bworst (?:customer )?(?:service|support|company|experience)\b"
    r"|\bwaste of (?:my )?time\b|\bfed up\b|\bsick of (?:this|you)\b"
)
_CAPS_RANT_MIN_WORDS = 5
_CAPS_RANT_RATIO = 0.8


def _is_caps_rant(text: str) -> bool:
    words = re.findall(r"[A-Za-z]{2,}", text)
    if len(words) < _CAPS_RANT_MIN_WORDS:
        return False
    return sum(word.isupper() for word in words) / len(words) >= _CAPS_RANT_RATIO


def _frustration_marker(text: str) -> str | None:
    """A phrase, shouting or '!!!' that signals frustration even when VADER is neutral."""
    match = _FRUSTRATION_PHRASES.search(_normalise(text))
    if match:
        return match.group(0)
    # Shouting and "!!!" also come with joy ("THANK YOU SO MUCH!!!"), so only
    # count them when the words themselves are not positive.
    if sentiment(text) > 0:
        return None
    if "!!!" in text:
        return "repeated '!!!'"
    return "ALL CAPS message" if _is_caps_rant(text) else None


def _recent_user_texts(inp: RuleInput, window: int) -> list[str]:
    """The new message plus up to ``window - 1`` earlier user messages."""
    # Guarded because history[-0:] would be the whole history, not none of it.
    earlier = [turn.user_text for turn in inp.history][-(window - 1) :] if window > 1 else []
    return earlier + [inp.message]


def _rule_negative_sentiment(inp: RuleInput, config: RuleConfig) -> Decision | None:
    marker = _frustration_marker(inp.message)
    if marker:
        return _decision(Reason.NEGATIVE_SENTIMENT, f"frustration marker: {marker}", config)
    texts = _recent_user_texts(inp, config.sentiment_window)
    mean = sum(sentiment(text) for text in texts) / len(texts)
    if mean > config.sentiment_threshold:
        return None
    detail = f"mean sentiment {mean:.2f} over last {len(texts)} message(s) <= {config.sentiment_threshold}"
    return _decision(Reason.NEGATIVE_SENTIMENT, detail, config)


# --------------------------------------------------------------------------- 3. low confidence


def _recent_questions(history: Sequence[Turn], count: int) -> list[Turn]:
    """The last ``count`` turns that are real questions (small talk skipped), newest first."""
    questions = [turn for turn in reversed(history) if not _is_small_talk(turn.user_text)]
    return questions[:count]


def _is_low(confidence: float | None, threshold: float) -> bool:
    # Unknown confidence is not evidence of failure, so it breaks the streak.
    return confidence is not None and confidence < threshold


def _rule_low_confidence(inp: RuleInput, config: RuleConfig) -> Decision | None:
    if _is_small_talk(inp.message):
        return None
    needed = config.low_confidence_turns - 1
    earlier = _recent_questions(inp.history, needed)
    confidences = [inp.confidence] + [turn.confidence for turn in earlier]
    if len(earlier) < needed or not all(_is_low(c, config.low_confidence_threshold) for c in confidences):
        return None
    scores = ", ".join(f"{c:.2f}" for c in confidences if c is not None)
    detail = (
        f"retrieval confidence below {config.low_confidence_threshold} for "
        f"{len(confidences)} consecutive question(s) ({scores})"
    )
    return _decision(Reason.LOW_CONFIDENCE, detail, config)


# --------------------------------------------------------------------------- 4. repeated question

_REPEAT_WINDOW = 5
_STOPWORDS = frozenset(
    """
    a an the is are was were be been am do does did i me my mine we our us you your it its
    to of in on for at with and or but so can could would should will shall may might must
    please what where when how why who which whose this that these those there here now
    hi hello hey thanks thank again still just about any some have has had get got yet
    really even already ok okay up out if then than too very
    """.split()
)


def _stem(word: str) -> str:
    """Crude suffix stripping; good enough to match "refunds" with "refund"."""
    for suffix in ("ing", "ed", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    if re.search(r"(?:ss|x|z|ch|sh)es$", word) and len(word) > 4:
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def _content_stems(text: str) -> frozenset[str]:
    return frozenset(_stem(word) for word in _words(text) if word not in _STOPWORDS)


def _contains_sequence(longer: list[str], shorter: list[str]) -> bool:
    size = len(shorter)
    return any(longer[i : i + size] == shorter for i in range(len(longer) - size + 1))


def _similarity(new: str, old: str) -> float:
    """Jaccard over content stems, or 1.0 when one question contains the other."""
    new_words, old_words = _words(new), _words(old)
    short, long_ = sorted((new_words, old_words), key=len)
    if len(short) >= 3 and _contains_sequence(long_, short):
        return 1.0
    a, b = _content_stems(new), _content_stems(old)
    if not a or not b:
        return 0.0
    if min(len(a), len(b)) >= 2 and (a <= b or b <= a):
        return 1.0
    return len(a & b) / len(a | b)


def _rule_repeated_question(inp: RuleInput, config: RuleConfig) -> Decision | None:
    if _is_small_talk(inp.message):
        return None
    for turn in reversed(inp.history[-_REPEAT_WINDOW:]):
        score = _similarity(inp.message, turn.user_text)
        if score >= config.repeat_similarity:
            detail = f"repeats earlier question {turn.user_text!r} (similarity {score:.2f})"
            return _decision(Reason.REPEATED_QUESTION, detail, config)
    return None


# --------------------------------------------------------------------------- 5. risky topics


def _risky_matches(text: str, config: RuleConfig) -> list[tuple[str, str]]:
    """(topic, matched text) for each topic with at least one matching pattern."""
    normalised = _normalise(text)
    found: list[tuple[str, str]] = []
    for topic, patterns in config._compiled:
        match = next((m for p in patterns if (m := p.search(normalised))), None)
        if match:
            found.append((topic, match.group(0)))
    return found


def _rule_risky_topic(inp: RuleInput, config: RuleConfig) -> Decision | None:
    candidates = [
        _decision(Reason.RISKY_TOPIC, f"risky topic {topic!r}: {phrase!r}", config, topic=topic)
        for topic, phrase in _risky_matches(inp.message, config)
    ]
    return _highest(candidates)


# --------------------------------------------------------------------------- 6, 7. tools


def _rule_tool_failure(inp: RuleInput, config: RuleConfig) -> Decision | None:
    if not inp.tool_failures:
        return None
    detail = f"tool(s) failed: {', '.join(inp.tool_failures)}"
    return _decision(Reason.TOOL_FAILURE, detail, config)


def _rule_approval_required(inp: RuleInput, config: RuleConfig) -> Decision | None:
    if not inp.approvals_pending:
        return None
    detail = f"awaiting human approval: {', '.join(inp.approvals_pending)}"
    return _decision(Reason.APPROVAL_REQUIRED, detail, config)


# --------------------------------------------------------------------------- evaluate

_RULES: tuple[Callable[[RuleInput, RuleConfig], Decision | None], ...] = (
    _rule_user_request,
    _rule_negative_sentiment,
    _rule_low_confidence,
    _rule_repeated_question,
    _rule_risky_topic,
    _rule_tool_failure,
    _rule_approval_required,
)


def _highest(decisions: Sequence[Decision]) -> Decision | None:
    """The highest-priority decision; on ties the earliest one wins."""
    best: Decision | None = None
    for decision in decisions:
        if best is None or PRIORITY_LEVELS.index(decision.priority) > PRIORITY_LEVELS.index(best.priority):
            best = decision
    return best


DEFAULT_CONFIG = RuleConfig()


def evaluate(inp: RuleInput, config: RuleConfig = DEFAULT_CONFIG) -> Decision:
    """Run every rule and return the highest-priority escalation, or a no-escalation decision."""
    fired = [decision for rule in _RULES if (decision := rule(inp, config)) is not None]
    return _highest(fired) or NO_ESCALATION
