"""Reads the agent repeats on every reply."""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches

from agent.models import AssistantProfile

PERSONA_KEY = "assistant-profile"
PERSONA_CACHE_S = 10  # how long another process may answer with a profile staff have just changed
_MISSING = object()


@dataclass(frozen=True)
class Persona:
    text: str  # at the top of the instructions
    topics: str  # what the assistant helps with
    stay_on_topic: bool  # politely decline everything else


def persona_from_settings() -> Persona:
    return Persona(settings.SUPPORT_PERSONA, settings.SUPPORT_TOPICS, settings.SUPPORT_STAY_ON_TOPIC)


def assistant_persona() -> Persona:
    """The profile staff set in admin, its empty fields filled from the settings.

    Read on every reply, so the row is kept in this process for PERSONA_CACHE_S; admin
    forgets it at once when it is edited here (forget_assistant_persona).
    """
    row = caches["local"].get(PERSONA_KEY, _MISSING)
    if row is _MISSING:
        row = (AssistantProfile.objects.filter(pk=AssistantProfile.SINGLETON)
               .values("persona", "topics", "stay_on_topic").first())
        caches["local"].set(PERSONA_KEY, row, PERSONA_CACHE_S)
    default = persona_from_settings()
    if row is None:
        return default
    return Persona(row["persona"].strip() or default.text, row["topics"].strip() or default.topics,
                   row["stay_on_topic"])


def forget_assistant_persona() -> None:
    caches["local"].delete(PERSONA_KEY)
