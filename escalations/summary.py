"""A short extractive summary of a chat for the human who picks it up.

Built from the session's messages through the related manager (escalations never
imports conversations). No LLM: the first question states the problem, the latest
ones say where it stands, and identifiers (order numbers, emails) are pulled out.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

MAX_QUOTE_CHARS = 240
_ORDER = re.compile(r"\b(?:order|ord|#)\s*(?:number|no\.?|nr\.?)?\s*[:#]?\s*([A-Z0-9][A-Z0-9-]{3,})\b", re.I)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_QUOTE_CHARS else text[: MAX_QUOTE_CHARS - 1].rstrip() + "…"


def _identifiers(texts: Sequence[str]) -> list[str]:
    found: list[str] = []
    for text in texts:
        found += [f"order {m}" for m in _ORDER.findall(text) if any(ch.isdigit() for ch in m)]
        found += _EMAIL.findall(text)
    return list(dict.fromkeys(found))[:5]


def summarise(messages: Sequence[Any], reason_label: str = "", detail: str = "", low_confidence: float = 0.35) -> str:
    """A few plain lines: the problem, the latest question, what the bot did, identifiers, why it escalated."""
    user = [m.content for m in messages if m.role == "user" and m.content.strip()]
    bot = [m for m in messages if m.role == "assistant"]
    lines: list[str] = []
    if user:
        lines.append(f"Customer's first message: “{_quote(user[0])}”")
    if len(user) > 1:
        lines.append(f"Latest message: “{_quote(user[-1])}”")
    if bot:
        low = sum(1 for m in bot if m.confidence is not None and m.confidence < low_confidence)
        lines.append(f"{len(user)} customer message(s), {len(bot)} bot reply(ies)"
                     + (f", {low} with little support in the help centre" if low else ""))
    ids = _identifiers(user)
    if ids:
        lines.append("Mentioned: " + ", ".join(ids))
    if reason_label:
        lines.append(f"Escalated: {reason_label}" + (f" ({_quote(detail)})" if detail else ""))
    return "\n".join(lines) or "No messages yet."


def session_summary(session: Any, reason_label: str = "", detail: str = "", low_confidence: float = 0.35) -> str:
    """Summary of a ChatSession's messages (read through `session.messages`)."""
    return summarise(list(session.messages.order_by("created_at", "id")), reason_label, detail, low_confidence)
