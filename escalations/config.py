"""The escalation rules' configuration, built once from settings."""
from __future__ import annotations

from functools import lru_cache

from django.conf import settings

from escalations.rules import DEFAULT_RISKY_PATTERNS, RuleConfig
from supportdesk.env import EnvError


def parse_extra_patterns(value: str) -> dict[str, list[str]]:
    extra: dict[str, list[str]] = {}
    for item in filter(None, (part.strip() for part in value.split(";"))):
        topic, sep, pattern = item.partition(":")
        if not sep or not topic.strip() or not pattern.strip():
            raise EnvError("ESCALATION_EXTRA_PATTERNS", "topic:regex pairs separated by ';'", value)
        extra.setdefault(topic.strip(), []).append(pattern.strip())
    return extra


@lru_cache(maxsize=1)
def rule_config() -> RuleConfig:
    extra = parse_extra_patterns(settings.ESCALATION_EXTRA_PATTERNS)
    patterns = {topic: [*DEFAULT_RISKY_PATTERNS.get(topic, ()), *extra.get(topic, ())]
                for topic in {*DEFAULT_RISKY_PATTERNS, *extra}}
    return RuleConfig(
        sentiment_threshold=settings.ESCALATION_SENTIMENT_THRESHOLD,
        sentiment_window=settings.ESCALATION_SENTIMENT_WINDOW,
        low_confidence_threshold=settings.ESCALATION_LOW_CONFIDENCE,
        low_confidence_turns=settings.ESCALATION_LOW_CONFIDENCE_TURNS,
        repeat_similarity=settings.ESCALATION_REPEAT_SIMILARITY,
        risky_patterns=patterns,
    )
