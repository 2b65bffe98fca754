"""Grounded mode: an extractive answer from the help centre when no LLM is configured.

The retrieved chunks are grouped into passages, one per document (chunks of the same
document merged in reading order). The passages are re-ranked with what retrieval
does not see: how close their best sentence is to the question and how many of the
question's words they contain. The best passage gives the answer, its most relevant
sentences kept in their original order; each other passage that scores close to it
adds its single most relevant sentence as a related pointer. Every block is cited, so
each sentence is supported by the passage it came from.

The parameters were tuned on the dev half of the Samsung e-manual set with
`manage.py eval_answers` (see that command for the metrics).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.claims import STOPWORDS

LABEL = "From our help centre:"
RELATED_LABEL = "Related:"
NOT_FOUND = ("I couldn't find an answer to that in our help centre. "
             "Would you like me to connect you with a person from our support team?")
# Words for the best passage, then one short sentence from each related passage:
# at most 120 + 3 * 30 = 210 words (median 115 on dev), under a minute of reading.
MAIN_WORDS = 120
RELATED_WORDS = 30
MAX_PASSAGES = 4
MAX_WORDS = MAIN_WORDS + (MAX_PASSAGES - 1) * RELATED_WORDS
# A passage is related when its re-ranking score is at least this share of the best
# one's and its best sentence is at least this similar to the question.
PASSAGE_RELATIVE_SCORE = 0.7
RELATED_MIN_SIMILARITY = 0.3
# Re-ranking score = retrieval score + weights * (best sentence similarity, query-word coverage).
PASSAGE_SIMILARITY_WEIGHT = 1.0
PASSAGE_COVERAGE_WEIGHT = 0.6
# Sentence score = cosine similarity to the question + weight * query-word coverage.
SENTENCE_LEXICAL_WEIGHT = 0.3
SENTENCE_MIN_SCORE = 0.2
# A related sentence this similar to one already in the answer only adds its citation.
DUPLICATE_SIMILARITY = 0.9
SENTENCE_CACHE_TTL_S = 7 * 24 * 3600
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_WORD = re.compile(r"[a-z0-9]+")
_SUFFIXES = ("ing", "es", "ed", "s")


@dataclass(frozen=True)
class Extract:
    text: str
    cited: list[int]  # 1-based numbers of the passages cited


@dataclass
class Passage:
    """The retrieved chunks of one document, merged in reading order."""

    number: int  # 1-based position of the document's best chunk in the results: what the text cites
    score: float  # retrieval score of that chunk
    sentences: list[str]
    similarities: np.ndarray = field(default_factory=lambda: np.zeros(0))
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    coverage: float = 0.0

    def rank_score(self) -> float:
        best = float(self.similarities.max()) if len(self.similarities) else 0.0
        return self.score + PASSAGE_SIMILARITY_WEIGHT * best + PASSAGE_COVERAGE_WEIGHT * self.coverage


@dataclass
class _Block:
    sentences: list[str]
    cited: list[int]


def split_sentences(text: str) -> list[str]:
    lines = [line.strip(" -*#\t") for line in text.splitlines()]
    sentences: list[str] = []
    for line in filter(None, lines):
        sentences.extend(s.strip() for s in _SENTENCE_SPLIT.split(line) if len(s.strip()) > 2)
    return sentences


def query_terms(text: str) -> set[str]:
    """Content words, crudely stemmed so that 'connect' matches 'connecting'."""
    return {_stem(word) for word in _WORD.findall(text.lower()) if word not in STOPWORDS}


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if len(word) > 4 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _coverage(terms: set[str], text: str) -> float:
    return len(terms & query_terms(text)) / len(terms) if terms else 0.0


def passages_of(results: list[Any]) -> list[Passage]:
    """One passage per document; its chunks in reading order, sentences the chunk overlap repeats dropped."""
    grouped: dict[int, list[tuple[int, Any]]] = {}
    for number, result in enumerate(results, start=1):
        grouped.setdefault(result.document_id, []).append((number, result))
    passages = []
    for members in grouped.values():
        number, best = members[0]
        sentences: list[str] = []
        # Chunk ids grow with the ordinal: a document's chunks are inserted in order.
        for _, result in sorted(members, key=lambda member: member[1].chunk_id):
            sentences.extend(s for s in split_sentences(result.text) if s not in sentences)
        passages.append(Passage(number=number, score=float(best.score), sentences=sentences))
    return passages


def sentence_vectors(sentences: list[str]) -> np.ndarray:
    """Normalised sentence embeddings, cached: the same help-centre sentences come back all day."""
    from django.conf import settings
    from django.core.cache import cache

    from knowledge.embeddings import encode

    keys = ["semb:" + hashlib.sha256(f"{settings.EMBEDDING_MODEL}\0{s}".encode()).hexdigest() for s in sentences]
    cached = cache.get_many(keys)
    missing = [i for i, key in enumerate(keys) if key not in cached]
    fresh = encode([sentences[i] for i in missing]) if missing else np.zeros((0, 0))
    if missing:
        cache.set_many({keys[i]: fresh[j].astype(np.float32).tobytes() for j, i in enumerate(missing)},
                       timeout=SENTENCE_CACHE_TTL_S)
    rows = {i: fresh[j] for j, i in enumerate(missing)}
    return np.array([rows[i] if i in rows else np.frombuffer(cached[key], dtype=np.float32)
                     for i, key in enumerate(keys)], dtype=np.float32)


def _score(query: str, query_vector: np.ndarray, passages: list[Passage]) -> None:
    """Similarities of every sentence to the question, in one batch; coverage of every passage."""
    everything = [s for p in passages for s in p.sentences]
    vectors = sentence_vectors(everything) if everything else np.zeros((0, len(query_vector)))
    terms, start = query_terms(query), 0
    for passage in passages:
        passage.vectors = vectors[start : start + len(passage.sentences)]
        passage.similarities = passage.vectors @ np.asarray(query_vector, dtype=np.float32)
        passage.coverage = _coverage(terms, " ".join(passage.sentences))
        start += len(passage.sentences)


def chosen_passages(passages: list[Passage]) -> list[Passage]:
    """The best passage by re-ranking score, then those close to it (at most MAX_PASSAGES)."""
    ranked = sorted((p for p in passages if p.sentences), key=lambda p: (-p.rank_score(), p.number))
    if not ranked:
        return []
    floor = PASSAGE_RELATIVE_SCORE * ranked[0].rank_score()
    related = [p for p in ranked[1:] if p.rank_score() >= floor and p.similarities.max() >= RELATED_MIN_SIMILARITY]
    return [ranked[0], *related[: MAX_PASSAGES - 1]]


def _sentence_scores(passage: Passage, terms: set[str]) -> np.ndarray:
    lexical = np.array([_coverage(terms, s) for s in passage.sentences])
    return passage.similarities + SENTENCE_LEXICAL_WEIGHT * lexical


def _main_block(passage: Passage, terms: set[str]) -> tuple[_Block, list[int]]:
    """The passage's most relevant sentences within MAIN_WORDS, in reading order."""
    scores = _sentence_scores(passage, terms)
    keep: list[int] = []
    words = 0
    for index in np.argsort(-scores, kind="stable"):
        length = len(passage.sentences[index].split())
        if keep and (words + length > MAIN_WORDS or scores[index] < SENTENCE_MIN_SCORE):
            continue
        keep.append(int(index))
        words += length
    kept = sorted(keep)
    return _Block([_fit(passage.sentences[i], MAIN_WORDS) for i in kept], [passage.number]), kept


def _related_sentence(passage: Passage, terms: set[str]) -> int | None:
    scores = _sentence_scores(passage, terms)
    fitting = [i for i in np.argsort(-scores, kind="stable")
               if len(passage.sentences[i].split()) <= RELATED_WORDS and scores[i] >= SENTENCE_MIN_SCORE]
    return int(fitting[0]) if fitting else None


def _fit(sentence: str, budget: int) -> str:
    words = sentence.split()
    return sentence if len(words) <= budget else " ".join(words[:budget]) + "…"


def extract_answer(query: str, query_vector: np.ndarray, results: list[Any]) -> Extract:
    """The best passage's key sentences, then one sentence per related passage; all cited."""
    passages = passages_of(results)
    _score(query, query_vector, passages)
    chosen = chosen_passages(passages)
    if not chosen:
        return Extract(text="", cited=[])
    terms = query_terms(query)
    main, kept = _main_block(chosen[0], terms)
    blocks, owned = [main], [(chosen[0].vectors[i], main) for i in kept]
    for passage in chosen[1:]:
        index = _related_sentence(passage, terms)
        if index is None:
            continue
        vector = passage.vectors[index]
        twin = next((block for v, block in owned if float(v @ vector) >= DUPLICATE_SIMILARITY), None)
        if twin is not None:
            twin.cited.append(passage.number)  # the same statement in two documents: cite both once
            continue
        block = _Block([passage.sentences[index]], [passage.number])
        blocks.append(block)
        owned.append((vector, block))
    return _render(blocks)


def _render(blocks: list[_Block]) -> Extract:
    """The answer paragraph, then the related passages as a short list (Markdown)."""
    lines = [" ".join(b.sentences) + " " + "".join(f"[{n}]" for n in b.cited) for b in blocks]
    text = lines[0] + ("\n\n" + RELATED_LABEL + "\n" + "\n".join(f"- {line}" for line in lines[1:]) if lines[1:] else "")
    cited = [n for b in blocks for n in b.cited]
    return Extract(text=text, cited=list(dict.fromkeys(cited)))


def compose(query: str, query_vector: np.ndarray, results: list[Any], *, confident: bool) -> Extract:
    """The whole grounded reply: a labelled extract, or an honest 'not found'."""
    if not results or not confident or query_vector is None:
        return Extract(text=NOT_FOUND, cited=[])
    extract = extract_answer(query, query_vector, results)
    if not extract.text:
        return Extract(text=NOT_FOUND, cited=[])
    return Extract(text=f"{LABEL}\n\n{extract.text}", cited=extract.cited)


def tokens_of(text: str) -> list[str]:
    """Split a finished text into word-sized pieces to stream it like an LLM reply."""
    return re.findall(r"\S+\s*|\s+", text)
