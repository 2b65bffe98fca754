"""Grounded mode: an extractive answer from the help centre when no LLM is configured.

The retrieved chunks are grouped into passages, one per document (chunks of the same
document merged in reading order). The passages are re-ranked by their retrieval score
plus the share of the question's words they contain. The best passage gives the
answer: its sentences with the most question words first, kept in their original
order, within MAIN_WORDS. Each other passage that scores close to it adds one short
sentence as a related pointer. Every block is cited, so each sentence is supported by
the passage it came from.

Scoring is lexical on purpose. Scoring sentences by embedding similarity to the
question did no better on the dev half of the Samsung e-manual set (`manage.py
eval_answers`, same retrieval: answer overlap 0.754 vs 0.742 lexical, citation hits
0.760 vs 0.771, paraphrased questions included) and costs a model call over every
sentence on each reply, before the first token; lexical scoring takes about a
millisecond.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from agent.claims import STOPWORDS

LABEL = "From our help centre:"
RELATED_LABEL = "Related:"
NOT_FOUND = ("I couldn't find an answer to that in our help centre. "
             "Would you like me to connect you with a person from our support team?")
# Tuned on the dev half of the e-manual set (see the module docstring). The best
# passage gets MAIN_WORDS, each related one sentence of at most RELATED_WORDS: at most
# 120 + 3 * 30 = 210 words (median about 120 on dev), under a minute of reading.
MAIN_WORDS = 120
RELATED_WORDS = 30
MAX_PASSAGES = 4
MAX_WORDS = MAIN_WORDS + (MAX_PASSAGES - 1) * RELATED_WORDS
# Re-ranking score = retrieval score + weight * share of the question's words in the passage;
# a passage is related when it reaches this share of the best passage's score. Both sit on
# the scale of knowledge.retrieval's fused score: re-tune them on dev when its fusion changes.
PASSAGE_COVERAGE_WEIGHT = 0.6
PASSAGE_RELATIVE_SCORE = 0.6
# A related sentence whose words are mostly in one sentence already shown only adds its citation.
DUPLICATE_OVERLAP = 0.8
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_WORD = re.compile(r"[a-z0-9]+")
_LINE_MARKER = re.compile(r"^\s*(?:(?:[-*+]|\d+[.)])\s+|#{1,6}\s+|>\s*)+")  # bullets, numbers, headings, quotes
_SUFFIXES = ("ing", "ed", "s")


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
    coverage: float = 0.0  # share of the question's words found in the passage

    def rank_score(self) -> float:
        return self.score + PASSAGE_COVERAGE_WEIGHT * self.coverage


@dataclass
class _Block:
    sentences: list[str]
    cited: list[int]


def split_sentences(text: str) -> list[str]:
    """The sentences of a chunk's Markdown, without list bullets, heading marks or rules.

    The reply is rendered as Markdown, so bold stays balanced: stripping every `*` at the
    ends of a line turned "- **Gift cards.** They…" into "Gift cards.** They…".
    """
    lines = [_LINE_MARKER.sub("", line).strip() for line in text.splitlines()]
    sentences: list[str] = []
    for line in lines:
        if _WORD.search(line.lower()):  # not a rule (---) or a lone marker
            sentences.extend(_balanced(s.strip()) for s in _SENTENCE_SPLIT.split(line) if len(s.strip()) > 2)
    return sentences


def _balanced(sentence: str) -> str:
    # A sentence split inside a bold span loses its markers rather than break the reply's Markdown.
    return sentence.replace("**", "") if sentence.count("**") % 2 else sentence


def query_terms(text: str) -> set[str]:
    """Content words, crudely stemmed so that 'connect' matches 'connecting'."""
    return {_stem(word) for word in _WORD.findall(text.lower()) if word not in STOPWORDS}


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if len(word) > 4 and word.endswith(suffix) and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def _coverage(terms: set[str], text: str) -> float:
    return len(terms & query_terms(text)) / len(terms) if terms else 0.0


def passages_of(results: list[Any]) -> list[Passage]:
    """One passage per document; its chunks in reading order, sentences the chunk overlap repeats dropped."""
    grouped: dict[int, list[tuple[int, Any]]] = {}
    for number, result in enumerate(results, start=1):
        # Quoted word for word to the customer: a chunk flagged as a possible prompt injection never is.
        if not getattr(result, "injection_flagged", False):
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


def chosen_passages(passages: list[Passage], terms: set[str]) -> list[Passage]:
    """The best passage by re-ranking score, then those close to it (at most MAX_PASSAGES)."""
    for passage in passages:
        passage.coverage = _coverage(terms, " ".join(passage.sentences))
    ranked = sorted((p for p in passages if p.sentences), key=lambda p: (-p.rank_score(), p.number))
    if not ranked:
        return []
    floor = PASSAGE_RELATIVE_SCORE * ranked[0].rank_score()
    return [ranked[0], *[p for p in ranked[1:] if p.rank_score() >= floor][: MAX_PASSAGES - 1]]


def _by_relevance(sentences: list[str], terms: set[str]) -> list[int]:
    """Sentence indexes, most question words first; reading order among equals."""
    scores = [_coverage(terms, sentence) for sentence in sentences]
    return sorted(range(len(sentences)), key=lambda i: -scores[i])


def _main_block(passage: Passage, terms: set[str]) -> _Block:
    """The passage's most relevant sentences within MAIN_WORDS, in reading order."""
    keep: list[int] = []
    words = 0
    for index in _by_relevance(passage.sentences, terms):
        length = len(passage.sentences[index].split())
        if keep and words + length > MAIN_WORDS:
            continue
        keep.append(index)
        words += length
    return _Block([_fit(passage.sentences[i], MAIN_WORDS) for i in sorted(keep)], [passage.number])


def _related_sentence(passage: Passage, terms: set[str]) -> str | None:
    fitting = [i for i in _by_relevance(passage.sentences, terms) if len(passage.sentences[i].split()) <= RELATED_WORDS]
    return passage.sentences[fitting[0]] if fitting else None


def _fit(sentence: str, budget: int) -> str:
    words = sentence.split()
    return sentence if len(words) <= budget else " ".join(words[:budget]) + "…"


def _twin(sentence: str, blocks: list[_Block]) -> _Block | None:
    """The block already saying (nearly) the same thing, if any."""
    words = set(_WORD.findall(sentence.lower()))
    for block in blocks:
        for shown in block.sentences:
            if words and len(words & set(_WORD.findall(shown.lower()))) / len(words) >= DUPLICATE_OVERLAP:
                return block
    return None


def extract_answer(query: str, results: list[Any]) -> Extract:
    """The best passage's key sentences, then one sentence per related passage; all cited."""
    terms = query_terms(query)
    chosen = chosen_passages(passages_of(results), terms)
    if not chosen:
        return Extract(text="", cited=[])
    blocks = [_main_block(chosen[0], terms)]
    for passage in chosen[1:]:
        sentence = _related_sentence(passage, terms)
        if sentence is None:
            continue
        twin = _twin(sentence, blocks)
        if twin is not None:
            twin.cited.append(passage.number)  # the same statement in two documents: cite both once
        else:
            blocks.append(_Block([sentence], [passage.number]))
    return _render(blocks)


def _render(blocks: list[_Block]) -> Extract:
    """The answer paragraph, then the related passages as a short list (Markdown)."""
    lines = [" ".join(b.sentences) + " " + "".join(f"[{n}]" for n in b.cited) for b in blocks]
    related = "".join(f"\n- {line}" for line in lines[1:])
    text = lines[0] + (f"\n\n{RELATED_LABEL}{related}" if related else "")
    cited = [n for b in blocks for n in b.cited]
    return Extract(text=text, cited=list(dict.fromkeys(cited)))


def compose(query: str, results: list[Any], *, confident: bool) -> Extract:
    """The whole grounded reply: a labelled extract, or an honest 'not found'."""
    if not results or not confident:
        return Extract(text=NOT_FOUND, cited=[])
    extract = extract_answer(query, results)
    if not extract.text:
        return Extract(text=NOT_FOUND, cited=[])
    return Extract(text=f"{LABEL}\n\n{extract.text}", cited=extract.cited)


def tokens_of(text: str) -> list[str]:
    """Split a finished text into word-sized pieces to stream it like an LLM reply."""
    return re.findall(r"\S+\s*|\s+", text)
