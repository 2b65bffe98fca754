"""Grounded mode: an extractive answer from the help centre when no LLM is configured.

The answer keeps the most relevant sentences of the top passages in their original
order and cites them, so it reads like a short reply and every sentence is supported.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

LABEL = "From our help centre:"
NOT_FOUND = ("I couldn't find an answer to that in our help centre. "
             "Would you like me to connect you with a person from our support team?")
MAX_WORDS = 140
MAX_PASSAGES = 3
# A passage joins the answer only when it scores close to the best one.
PASSAGE_RELATIVE_SCORE = 0.85
SENTENCE_MIN_SIMILARITY = 0.25
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Extract:
    text: str
    cited: list[int]  # 1-based numbers of the passages cited


def split_sentences(text: str) -> list[str]:
    lines = [line.strip(" -*#\t") for line in text.splitlines()]
    sentences: list[str] = []
    for line in filter(None, lines):
        sentences.extend(s.strip() for s in _SENTENCE_SPLIT.split(line) if len(s.strip()) > 2)
    return sentences


def _chosen_passages(results: list[Any]) -> list[int]:
    best = results[0].score
    picked = [0]
    for i, result in enumerate(results[1:MAX_PASSAGES], start=1):
        if result.score >= PASSAGE_RELATIVE_SCORE * best and result.document_id not in {results[j].document_id for j in picked}:
            picked.append(i)
    return picked


def _sentence_scores(query_vector: np.ndarray, sentences: list[str], query: str) -> np.ndarray:
    from knowledge.embeddings import encode

    vectors = encode(sentences)
    dense = vectors @ query_vector
    query_words = set(_WORD.findall(query.lower()))
    lexical = np.array([len(query_words & set(_WORD.findall(s.lower()))) / (len(query_words) or 1) for s in sentences])
    return dense + 0.3 * lexical


def extract_answer(query: str, query_vector: np.ndarray, results: list[Any]) -> Extract:
    """Pick sentences from the best passages, within MAX_WORDS, in reading order."""
    picked = _chosen_passages(results)
    units = [(n, s) for n in picked for s in split_sentences(results[n].text)]
    if not units:
        return Extract(text="", cited=[])
    scores = _sentence_scores(query_vector, [s for _, s in units], query)
    keep, words = set(), 0
    for index in np.argsort(-scores):
        length = len(units[index][1].split())
        if (scores[index] < SENTENCE_MIN_SIMILARITY and keep) or words + length > MAX_WORDS and keep:
            continue
        keep.add(int(index))
        words += length
    return _render(units, sorted(keep))


def _render(units: list[tuple[int, str]], kept: list[int]) -> Extract:
    parts, cited = [], []
    for position, index in enumerate(kept):
        passage, sentence = units[index]
        last_of_passage = position + 1 == len(kept) or units[kept[position + 1]][0] != passage
        parts.append(f"{sentence} [{passage + 1}]" if last_of_passage else sentence)
        if passage + 1 not in cited:
            cited.append(passage + 1)
    return Extract(text=" ".join(parts), cited=cited)


def compose(query: str, query_vector: np.ndarray, results: list[Any], *, confident: bool) -> Extract:
    """The whole grounded reply: a labelled extract, or an honest 'not found'."""
    if not results or not confident:
        return Extract(text=NOT_FOUND, cited=[])
    extract = extract_answer(query, query_vector, results)
    if not extract.text:
        return Extract(text=NOT_FOUND, cited=[])
    return Extract(text=f"{LABEL}\n\n{extract.text}", cited=extract.cited)


def tokens_of(text: str) -> list[str]:
    """Split a finished text into word-sized pieces to stream it like an LLM reply."""
    return re.findall(r"\S+\s*|\s+", text)
