"""Flags generated sentences that cite nothing, or cite a source that does not support them."""
from __future__ import annotations

import re
from dataclasses import dataclass

CITATION = re.compile(r"\[(\d{1,2})\]")
_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
STOPWORDS = frozenset(
    "a an the and or but if of to in on at for from by with is are was were be been it its this that these those "
    "you your we our us i me my can will would should could do does did not no yes so as about into than then "
    "there their they them he she his her have has had which who what when where why how all any each also".split()
)
# Greetings, offers of help and other sentences that make no factual claim.
NON_CLAIM = re.compile(r"^(hi|hello|thanks|thank you|you're welcome|let me know|is there anything|"
                       r"i'm sorry|sorry|i (?:don't|do not) know|i couldn't find|would you like|happy to help)", re.I)
MIN_SUPPORT = 0.35


@dataclass(frozen=True)
class Claim:
    sentence: str
    cited: tuple[int, ...]
    problem: str  # "no_citation" | "unsupported" | "unknown_source"


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 2}


def support(sentence: str, source_text: str) -> float:
    """Share of the sentence's content words found in the source."""
    words = content_words(CITATION.sub("", sentence))
    return len(words & content_words(source_text)) / len(words) if words else 1.0


def unsupported_claims(answer: str, sources: dict[int, str]) -> list[Claim]:
    flagged = []
    for sentence in filter(None, (s.strip() for s in _SENTENCE.split(answer))):
        cited = tuple(int(n) for n in CITATION.findall(sentence))
        if len(content_words(sentence)) < 3 or NON_CLAIM.match(sentence):
            continue
        if not cited:
            flagged.append(Claim(sentence, cited, "no_citation"))
        elif any(n not in sources for n in cited):
            flagged.append(Claim(sentence, cited, "unknown_source"))
        elif max(support(sentence, sources[n]) for n in cited) < MIN_SUPPORT:
            flagged.append(Claim(sentence, cited, "unsupported"))
    return flagged
