"""Knowledge search for the agent: dense (pgvector), full text (BM25 over tsvector) and hybrid.

Dense: cosine distance on the HNSW index, with pgvector's iterative scan so the
collection/tag/status filter does not starve the result list.

Full text: Postgres' ts_rank has no IDF, so on a natural-language question the
common words decide the ranking. Instead the query's lexemes (english config:
stemmed, stopwords dropped) are scored with BM25 over `knowledge_posting`, an
inverted index derived from each chunk's tsvector at ingestion (one row per lexeme
and chunk: occurrences, title/heading ones counting TITLE_TF_WEIGHT, and the chunk's
token count for length normalisation). IDF comes from per-lexeme chunk counts in the
searched scope. The rarest lexemes, within FETCH_BUDGET postings, pick the candidates;
the commoner ones are added to the best candidates' scores by primary-key lookups, so
a question full of common words costs about as much as one without.

Each chunk's BM25 is multiplied by its coverage, the share of the query's IDF mass it
contains (a coordination factor, as in classic Lucene): two rare words matched beat
one rare word repeated.

Hybrid: a convex combination of per-query min-max normalised scores of both
candidate pools, where the text part is also gated by coverage. A text match on one
incidental word of a long question then adds little, so a customer describing a
symptom in their own words still gets what the dense retriever found; a chunk found
by only one retriever scores 0 on the other. Chunks flagged as possible prompt
injection keep their place in the pool but their score is scaled by FLAGGED_PENALTY.
"""
from __future__ import annotations

import contextvars
import functools
import hashlib
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from django.core.cache import caches
from django.db import close_old_connections, connection

from knowledge import embeddings
from knowledge.metrics import RETRIEVAL_SECONDS
from knowledge.models import DEFAULT_COLLECTION

log = logging.getLogger("knowledge.retrieval")
T = TypeVar("T")

# --- Tuned constants ------------------------------------------------------------
# Chosen on the dev splits only (E-Manual dev 341 queries, SciFact dev 150), document-level
# nDCG@10 (dense / full text / hybrid): E-Manual .535 / .713 / .721, SciFact .681 / .652 / .707.
# - Full text: plain OR + ts_rank_cd scored .462 on E-Manual dev, OR + ts_rank .550, ANDed
#   websearch_to_tsquery .496; BM25 from the tsvector .68-.69, x coverage .713. k1 (0.9-1.6), b
#   (0.5-0.9) and the title tf weight (0.5-2) moved nDCG by < .01: textbook values kept.
# - Fusion, nDCG@10 on E-Manual dev / SciFact dev (candidate pool 50): min-max w=.3 .728/.684,
#   w=.4 .724/.700; z-score w=.4 .725/.702; RRF k=60 w=.3-.5 <= .696/.698. Gating the text part
#   by coverage ** 1.5 at w=.3 gives .721/.707: the same on dev, but on 15 symptom-style
#   paraphrases of E-Manual sections (tests/data/emanual_paraphrases.jsonl) hybrid keeps .540
#   where dense has .545 and full text .078, against .246 (min-max w=.3), .291 (z-score w=.4)
#   and .184 (RRF w=.3) ungated. Pools of 30/50/100 and gate powers 1-2 at w=.25-.35 are all within .005.
# - A bonus for several matching chunks per document (0.02-0.05 x log n) changed nothing.
# - hnsw.ef_search: dense nDCG@10 on SciFact dev .674 at 40, .677 at 100, .681 at 200 and 400
#   (= exact), for ~2 ms more per query.
EF_SEARCH = 200
BM25_K1 = 1.2
BM25_B = 0.75
TITLE_TF_WEIGHT = 1.0  # what one title/heading occurrence (weight A) counts as in tf, at ingestion; body text counts 1
COVERAGE_POWER = 1.0  # full-text score = BM25 x coverage ** COVERAGE_POWER
FUSION = "minmax"  # or "zscore", "rrf"
DENSE_WEIGHT = 0.3
GATE_POWER = 1.5  # hybrid text part = (1 - DENSE_WEIGHT) x coverage ** GATE_POWER x normalised text score
RRF_K = 60
MULTI_CHUNK_BONUS = 0.0
FLAGGED_PENALTY = 0.5
# Confidence = logistic(bias + a x best cosine similarity + b x its lead over the 10th best
# document), fitted (sklearn, C=10) on dev hybrid top-1 correctness: E-Manual and SciFact dev
# at 40% weight each, plus each set's queries run against the other corpus (nothing relevant,
# label 0) at 10% each. Dev, mean p vs top-1 accuracy: E-Manual .52 vs .54 (Brier .272),
# SciFact .55 vs .59 (Brier .203); off-topic mean p .11-.15, 99% under 0.35; the 15 symptom
# paraphrases .32 vs .47. A relative margin of the fused scores over the runner-up ranked better
# on the datasets (AUC .69/.86 against .52/.74) but their qrels hold one section per question:
# on the demo help centre, where two articles answer "How do I return an item?", it gave .25.
CONFIDENCE_BIAS = -3.168
CONFIDENCE_DENSE = 3.548
CONFIDENCE_GAP = 6.081
CONFIDENCE_GAP_RANK = 10

MODES = ("dense", "fulltext", "hybrid")
PREFILTER_FACTOR, PREFILTER_MIN = 4, 200  # chunks scored exactly: max(4 x pool, 200)
SCOPE_STATS_TTL_S = 60
# Chunks fetched for full text at most (sum of the seed lexemes' counts). 1500 vs 3000, hybrid
# nDCG@10: SciFact dev .721 vs .720, all .734 vs .733; E-Manual dev .722 both (1000: SciFact
# dev .717). Each posting read costs a document probe, so half the budget is half that work.
FETCH_BUDGET = 1500
MAX_QUERY_CHARS = 2000
MAX_QUERY_TERMS = 32


@dataclass(frozen=True)
class SearchResult:
    chunk_id: int
    document_id: int
    title: str
    heading_path: str
    location: str
    text: str
    score: float  # the fused score used for ranking
    dense_score: float | None  # cosine similarity, None if not retrieved densely
    text_score: float | None  # BM25 (from the tsvector) x coverage, None if not matched
    injection_flagged: bool


@dataclass(frozen=True)
class SearchResponse:
    results: list[SearchResult]
    confidence: float  # calibrated P(top result relevant)
    took_ms: float


@dataclass(frozen=True)
class DocumentHit:
    document_id: int
    score: float
    best: SearchResult
    matching_chunks: int


@dataclass(frozen=True)
class DocumentSearchResponse:
    results: list[DocumentHit]
    confidence: float
    took_ms: float


@dataclass(frozen=True)
class Candidate:
    chunk_id: int
    document_id: int
    score: float
    flagged: bool


@dataclass(frozen=True)
class TextCandidates:
    hits: list[Candidate]  # score = BM25 x coverage ** COVERAGE_POWER
    coverage: dict[int, float]  # chunk id -> share of the query's IDF mass it contains


NO_TEXT = TextCandidates([], {})


@dataclass(frozen=True)
class Ranked:
    chunk_id: int
    document_id: int
    score: float
    dense: float | None
    text: float | None
    flagged: bool


def search(
    query: str,
    *,
    k: int = 5,
    mode: str = "hybrid",
    collection: str = DEFAULT_COLLECTION,
    tags: Sequence[str] = (),
    candidates: int = 50,
) -> SearchResponse:
    """The k best chunks for `query` among ready documents of `collection` carrying all `tags`.

    mode is "dense", "fulltext" or "hybrid"; `candidates` is the size of each
    retriever's pool. Never raises on user input: a query with nothing searchable
    returns no results.
    """
    started = time.perf_counter()
    ranked, confidence = _rank(query, mode=mode, collection=collection, tags=tags, candidates=candidates)
    results = _hydrate(ranked[: max(k, 0)])
    took_ms = _observe(started, mode=mode, collection=collection, query=query, results=len(results),
                       confidence=confidence)
    return SearchResponse(results=results, confidence=confidence, took_ms=took_ms)


def search_documents(
    query: str,
    *,
    k: int = 10,
    mode: str = "hybrid",
    collection: str = DEFAULT_COLLECTION,
    tags: Sequence[str] = (),
    candidates: int = 50,
) -> DocumentSearchResponse:
    """Like search(), one hit per document, scored by its best chunk (see group_by_document)."""
    started = time.perf_counter()
    ranked, confidence = _rank(query, mode=mode, collection=collection, tags=tags, candidates=candidates)
    grouped = group_by_document(ranked)[: max(k, 0)]
    best = {r.chunk_id: r for r in _hydrate([top for _, top, _ in grouped])}
    hits = [DocumentHit(top.document_id, score, best[top.chunk_id], n) for score, top, n in grouped]
    took_ms = _observe(started, mode=mode, collection=collection, query=query, results=len(hits),
                       confidence=confidence)
    return DocumentSearchResponse(results=hits, confidence=confidence, took_ms=took_ms)


def group_by_document(ranked: Sequence[Ranked], bonus: float = MULTI_CHUNK_BONUS) -> list[tuple[float, Ranked, int]]:
    """(score, best chunk, matching chunks) per document, best first.

    The score is the best chunk's, plus bonus x log(matching chunks): 0 by default, as
    rewarding documents for having several matching chunks did not help on dev.
    """
    groups: dict[int, list[Ranked]] = {}
    for item in ranked:
        groups.setdefault(item.document_id, []).append(item)
    scored = [(items[0].score + bonus * math.log(len(items)), items[0], len(items)) for items in groups.values()]
    return sorted(scored, key=lambda entry: (-entry[0], entry[1].chunk_id))


# --- Ranking --------------------------------------------------------------------


def _rank(query: str, *, mode: str, collection: str, tags: Sequence[str], candidates: int) -> tuple[list[Ranked], float]:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    text = clean_query(query)
    if not text:
        return [], 0.0
    pool = min(max(candidates, 1), 1000)
    # The model encodes the query on another thread while Postgres ranks the full text:
    # both are most of a search's time and neither needs the other. The dense query
    # follows the vector (see _dense_started).
    vector = _query_vector(text) if mode != "fulltext" else None
    collect_dense = _dense_started(text, vector, collection=collection, tags=tags, limit=pool,
                                   alongside=mode == "hybrid")
    full = text_candidates(text, collection=collection, tags=tags, limit=pool) if mode != "dense" else NO_TEXT
    dense = collect_dense()
    ranked = rank(dense, full, mode=mode)
    return ranked, confidence_of(ranked, dense)


@functools.cache
def _embedder() -> ThreadPoolExecutor:
    # Created on first use, so a forked worker gets its own threads.
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="query-embedding")


_prefetched: OrderedDict[str, Future] = OrderedDict()
_prefetched_lock = threading.Lock()
PREFETCH_KEEP = 256  # embeddings started but not yet searched for; the oldest are dropped


def prefetch_query(query: str) -> None:
    """Start embedding a query that search() will be asked for shortly (see agent tool warm-up)."""
    text = clean_query(query)
    if not text:
        return
    with _prefetched_lock:
        if text not in _prefetched:
            _prefetched[text] = _embedder().submit(embeddings.encode_query, text)
        while len(_prefetched) > PREFETCH_KEEP:
            _prefetched.popitem(last=False)


@functools.cache
def _ahead() -> ThreadPoolExecutor:
    # As many as the chat hub's agent threads (conversations.hub.AGENT_THREADS): fewer would
    # make concurrent replies queue for a search they used to run on their own thread.
    return ThreadPoolExecutor(max_workers=8, thread_name_prefix="search-ahead")


def search_ahead(query: str, *, k: int = 5) -> Future:
    """search() started now on a thread of its own, with its own database connection.

    For callers with other work before they need the results (the agent loads memory
    meanwhile). That connection sees only committed rows, so a caller inside a
    transaction must search inline instead (see in_transaction()).
    """
    prefetch_query(query)
    return _on_own_connection(_ahead(), lambda: search(query, k=k))


def _on_own_connection(pool: ThreadPoolExecutor, work: Callable[[], T]) -> Future[T]:
    """`work` on one of the pool's threads, with that thread's own database connection.

    With the caller's context, so its log lines keep their request and session ids.
    """
    def run() -> T:
        close_old_connections()  # this thread sees no request signals: obey CONN_MAX_AGE and health checks
        try:
            return work()
        finally:
            close_old_connections()

    return pool.submit(contextvars.copy_context().run, run)


def _dense_started(text: str, vector: Future | None, *, collection: str, tags: Sequence[str], limit: int,
                   alongside: bool) -> Callable[[], list[Candidate]]:
    """The dense candidates, to collect by calling what this returns.

    Beside a full-text ranking (`alongside`), the nearest-neighbour query runs on a thread
    and connection of its own as soon as the vector is ready, rather than after that
    ranking: on the benchmark's questions the full text took 9 ms and the dense query
    3.5 ms more. Not inside a transaction, whose rows another connection could not see.
    """
    if vector is None:
        return lambda: []

    def dense() -> list[Candidate]:
        return dense_candidates(text, collection=collection, tags=tags, limit=limit, vector=vector.result())

    if alongside and not in_transaction():
        return _on_own_connection(_dense_pool(), dense).result
    return dense


@functools.cache
def _dense_pool() -> ThreadPoolExecutor:
    # As many as the search-ahead threads: each search in flight has at most one dense query.
    # A pool of its own: searches waiting on their dense queries in the search-ahead pool
    # could fill it and leave none of those queries a thread to run on.
    return ThreadPoolExecutor(max_workers=8, thread_name_prefix="dense-search")


def in_transaction() -> bool:
    """Whether this thread's connection has uncommitted work another connection would not see."""
    return connection.in_atomic_block


def _query_vector(text: str) -> Future:
    with _prefetched_lock:
        started = _prefetched.pop(text, None)
    return started or _embedder().submit(embeddings.encode_query, text)


def clean_query(query: str) -> str:
    """What Postgres and the model can take: no NUL, no lone surrogates, bounded length."""
    text = query.encode("utf-8", "replace").decode("utf-8").replace("\x00", " ")
    return " ".join(text.split())[:MAX_QUERY_CHARS]


def rank(dense: Sequence[Candidate], full: TextCandidates, *, mode: str, fusion: str = FUSION,
         dense_weight: float = DENSE_WEIGHT, gate_power: float = GATE_POWER, rrf_k: int = RRF_K,
         penalty: float = FLAGGED_PENALTY) -> list[Ranked]:
    """Fuse the candidate pools (raw scores in single modes) and apply the injection penalty."""
    dense_scores = {c.chunk_id: c.score for c in dense}
    text_scores = {c.chunk_id: c.score for c in full.hits}
    if mode == "dense":
        fused = dict(dense_scores)
    elif mode == "fulltext":
        fused = dict(text_scores)
    else:
        gate = {chunk_id: value**gate_power for chunk_id, value in full.coverage.items()}
        fused = fuse(dense_scores, text_scores, gate, fusion=fusion, dense_weight=dense_weight, rrf_k=rrf_k)
    meta = {c.chunk_id: c for c in (*dense, *full.hits)}
    ranked = [
        Ranked(chunk_id, meta[chunk_id].document_id, score * (penalty if meta[chunk_id].flagged else 1.0),
               dense_scores.get(chunk_id), text_scores.get(chunk_id), meta[chunk_id].flagged)
        for chunk_id, score in fused.items()
    ]
    return sorted(ranked, key=lambda r: (-r.score, r.chunk_id))


def fuse(dense: dict[int, float], text: dict[int, float], gate: dict[int, float], *, fusion: str,
         dense_weight: float, rrf_k: int = RRF_K) -> dict[int, float]:
    """w x dense part + (1 - w) x gate x text part, each part normalised within its pool.

    A chunk missing from a pool gets that pool's floor (0, or the lowest z-score).
    """
    normalise = {"rrf": lambda scores: _reciprocal_ranks(scores, rrf_k), "zscore": _zscores}.get(fusion, _minmax)
    dense_part, text_part = normalise(dense), normalise(text)
    floor = (lambda part: min(part.values(), default=0.0)) if fusion == "zscore" else (lambda part: 0.0)
    dense_floor, text_floor = floor(dense_part), floor(text_part)
    return {
        chunk_id: dense_weight * dense_part.get(chunk_id, dense_floor)
        + (1 - dense_weight) * gate.get(chunk_id, 1.0) * text_part.get(chunk_id, text_floor)
        for chunk_id in dense.keys() | text.keys()
    }


def _minmax(scores: dict[int, float]) -> dict[int, float]:
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    if high - low < 1e-9:
        return {key: 1.0 for key in scores}
    return {key: (value - low) / (high - low) for key, value in scores.items()}


def _zscores(scores: dict[int, float]) -> dict[int, float]:
    if not scores:
        return {}
    mean = sum(scores.values()) / len(scores)
    spread = math.sqrt(sum((v - mean) ** 2 for v in scores.values()) / len(scores)) or 1.0
    return {key: (value - mean) / spread for key, value in scores.items()}


def _reciprocal_ranks(scores: dict[int, float], rrf_k: int) -> dict[int, float]:
    ordered = sorted(scores, key=lambda key: (-scores[key], key))
    return {key: 1.0 / (rrf_k + position + 1) for position, key in enumerate(ordered)}


def confidence_features(dense: Sequence[Candidate]) -> tuple[float, float]:
    """(best cosine similarity, its lead over the CONFIDENCE_GAP_RANK-th best document's).

    Both are on the cosine scale, so an off-topic question (nothing close, nothing
    standing out) reads low whatever the collection. Fused scores are min-max
    normalised per query and a margin over the runner-up punishes help centres where
    two articles answer the question, so neither is used.
    """
    best: dict[int, float] = {}
    for candidate in dense:
        best[candidate.document_id] = max(best.get(candidate.document_id, -1.0), candidate.score)
    ordered = sorted(best.values(), reverse=True)
    if not ordered:
        return 0.0, 0.0
    return ordered[0], ordered[0] - ordered[min(CONFIDENCE_GAP_RANK, len(ordered)) - 1]


def confidence_of(ranked: Sequence[Ranked], dense: Sequence[Candidate]) -> float:
    """Calibrated P(top result relevant): a logistic fitted on the dev splits (see the constants).

    It reads the dense pool, so in "fulltext" mode (no dense pool) it is 0.
    """
    if not ranked or not dense:
        return 0.0
    top_dense, gap = confidence_features(dense)
    logit = CONFIDENCE_BIAS + CONFIDENCE_DENSE * top_dense + CONFIDENCE_GAP * gap
    return round(1.0 / (1.0 + math.exp(-logit)), 4)


# --- SQL ---------------------------------------------------------------------------


def _scope(collection: str, tags: Sequence[str]) -> tuple[str, dict[str, object]]:
    """The WHERE clause on the document `d` shared by every query."""
    clause = "d.collection = %(collection)s AND d.status = 'ready'"
    params: dict[str, object] = {"collection": collection}
    if tags:
        clause += " AND d.tags @> %(tags)s::varchar[]"
        params["tags"] = list(tags)
    return clause, params


def dense_candidates(query: str, *, collection: str, tags: Sequence[str] = (), limit: int = 50,
                     vector: Sequence[float] | None = None) -> list[Candidate]:
    """Nearest chunks by cosine similarity (1 - distance) through the HNSW index.

    `vector` is the query's embedding when the caller has it already.
    """
    vector = embeddings.encode_query(query) if vector is None else vector
    where, params = _scope(collection, tags)
    params.update(vector="[" + ",".join(f"{x:.7g}" for x in vector) + "]", limit=limit)
    # relaxed_order lets the index scan continue past filtered-out rows; the outer
    # ORDER BY restores exact order among the rows it returns. The settings and the search
    # go as one multi-statement query: Postgres runs it as one implicit transaction, so
    # SET LOCAL ends with it, in one round trip instead of five (BEGIN, SETs, COMMIT). Several
    # statements with parameters need Django's default client-side binding (not server_side_binding).
    sql = f"""
        SET LOCAL hnsw.ef_search = {int(max(EF_SEARCH, limit))};
        SET LOCAL hnsw.iterative_scan = relaxed_order;
        WITH nearest AS MATERIALIZED (
            SELECT c.id, c.document_id, c.injection_flagged, c.embedding <=> %(vector)s::vector AS distance
            FROM knowledge_chunk c JOIN knowledge_document d ON d.id = c.document_id
            WHERE {where}
            ORDER BY c.embedding <=> %(vector)s::vector
            LIMIT %(limit)s
        )
        SELECT id, document_id, 1 - distance, injection_flagged FROM nearest ORDER BY distance, id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while cursor.description is None and cursor.nextset():
            pass  # past the SETs' empty results
        rows = cursor.fetchall()
    return [Candidate(row[0], row[1], float(row[2]), row[3]) for row in rows]


def query_lexemes(query: str) -> list[str]:
    """The query's lexemes as the index stores them (english: stemmed, stopwords dropped).

    Without the words of a question frame (see frame_lexemes), unless nothing else is left.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT tsvector_to_array(to_tsvector('english', %s))", [query])
        lexemes = cursor.fetchone()[0] or []
    framing = frame_lexemes(query)
    lexemes = [lexeme for lexeme in lexemes if lexeme not in framing] or lexemes
    return sorted(lexemes, key=len, reverse=True)[:MAX_QUERY_TERMS]


# "How long does delivery take?" and "How much is shipping?" ask for a kind of answer (a time,
# an amount), not about a topic. Help centres title their sections the same way ("How long does
# a refund take?"), where these words are rare, so BM25 ranked the refund article first for a
# delivery question. Full text leaves them out; the dense query still reads the whole question.
QUESTION_FRAMES = (
    (re.compile(r"\bhow\s+long\b", re.IGNORECASE), ("long", "take", "took")),
    (re.compile(r"\bhow\s+(?:much|many)\b", re.IGNORECASE), ("much", "mani")),
    (re.compile(r"\bhow\s+(?:often|soon|far)\b", re.IGNORECASE), ("often", "soon", "far")),
)


def frame_lexemes(query: str) -> set[str]:
    """The lexemes (english stems) of the question frames `query` uses."""
    return {lexeme for pattern, lexemes in QUESTION_FRAMES if pattern.search(query) for lexeme in lexemes}


def text_candidates(query: str, *, collection: str, tags: Sequence[str] = (), limit: int = 50) -> TextCandidates:
    """Chunks containing a query lexeme, ranked by BM25 x coverage, from the postings table."""
    lexemes = query_lexemes(query)
    if not lexemes:
        return NO_TEXT
    chunks, avgdl = scope_stats(collection, tags)
    frequencies = document_frequencies(lexemes, collection=collection, tags=tags)
    idf = {lexeme: math.log(1 + (chunks - df + 0.5) / (df + 0.5)) for lexeme, df in frequencies.items()}
    seeds = set(_seed_lexemes(frequencies))
    if not seeds:
        return NO_TEXT
    where, params = _scope(collection, tags)
    params.update(
        lexemes=list(idf), idf=list(idf.values()), seed=[lexeme in seeds for lexeme in idf],
        total_idf=sum(idf.values()), avgdl=avgdl, k1=BM25_K1, b=BM25_B, power=COVERAGE_POWER,
        prefilter=max(PREFILTER_FACTOR * limit, PREFILTER_MIN), limit=limit,
    )
    with connection.cursor() as cursor:
        cursor.execute(_bm25_sql(where), params)
        rows = cursor.fetchall()
    return TextCandidates([Candidate(row[0], row[1], float(row[2]), row[3]) for row in rows],
                          {row[0]: float(row[4]) for row in rows})


def document_frequencies(lexemes: Sequence[str], *, collection: str, tags: Sequence[str] = ()) -> dict[str, int]:
    """Chunks in scope holding each lexeme, cached briefly like scope_stats.

    The common words of a help centre recur in most questions and are the costly ones
    to count, so nearly every query finds them cached.
    """
    prefix = "bm25-df:" + _scope_key(collection, tags) + ":"
    keys = {lexeme: prefix + hashlib.sha256(lexeme.encode()).hexdigest()[:32] for lexeme in lexemes}
    cache = caches["local"]
    cached = cache.get_many(list(keys.values()))
    found = {lexeme: int(cached[key]) for lexeme, key in keys.items() if key in cached}
    missing = [lexeme for lexeme in lexemes if lexeme not in found]
    if missing:
        counted = _count_postings(missing, collection, tags)
        cache.set_many({keys[lexeme]: df for lexeme, df in counted.items()}, timeout=SCOPE_STATS_TTL_S)
        found.update(counted)
    return {lexeme: found[lexeme] for lexeme in lexemes}


def _count_postings(lexemes: list[str], collection: str, tags: Sequence[str]) -> dict[str, int]:
    where, params = _scope(collection, tags)
    sql = f"""
        SELECT x.lexeme, (
            SELECT count(*) FROM knowledge_posting p JOIN knowledge_document d ON d.id = p.document_id
            WHERE p.lexeme = x.lexeme AND {where}
        )
        FROM unnest(%(lexemes)s::text[]) AS x(lexeme)
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {**params, "lexemes": lexemes})
        return {lexeme: int(count) for lexeme, count in cursor.fetchall()}


def _seed_lexemes(frequencies: dict[str, int]) -> list[str]:
    """The lexemes whose postings make the candidates: rarest first, within a fetch budget.

    Reading postings is most of the query time, and a chunk holding only words that
    thousands of chunks hold cannot rank high (low IDF, low coverage). The rarest
    lexeme always seeds, so a query of common words still finds something.
    """
    seeds, fetched = [], 0
    for df, lexeme in sorted((df, lexeme) for lexeme, df in frequencies.items() if df > 0):
        if seeds and fetched + df > FETCH_BUDGET:
            break
        seeds.append(lexeme)
        fetched += df
    return seeds


def _scope_key(collection: str, tags: Sequence[str]) -> str:
    return hashlib.sha256(repr((collection, sorted(tags))).encode()).hexdigest()


def scope_stats(collection: str, tags: Sequence[str]) -> tuple[int, float]:
    """(chunks, mean token count) of the searched scope, for IDF and length normalisation.

    Counting scans the whole collection, so the figures are cached briefly: a few
    documents more or less barely move them.
    """
    key, cache = "bm25-scope:" + _scope_key(collection, tags), caches["local"]
    cached = cache.get(key)
    if cached is not None:
        return cached
    where, params = _scope(collection, tags)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), coalesce(avg(c.token_count), 1) FROM knowledge_chunk c "
            f"JOIN knowledge_document d ON d.id = c.document_id WHERE {where}",
            params,
        )
        chunks, avgdl = cursor.fetchone()
    stats = (int(chunks), max(float(avgdl), 1.0))
    cache.set(key, stats, timeout=SCOPE_STATS_TTL_S)
    return stats


def _bm25_sql(where: str) -> str:
    # Two passes over the postings. `seeded` reads the seed lexemes' postings in full and
    # keeps the chunks with the best partial score (BM25 x coverage over the seeds);
    # `rest` then adds the common lexemes by primary-key probes for those chunks only.
    # The constants are cast to float8: bound as numeric literals they made Postgres compute
    # every posting's length normalisation in numeric arithmetic (17% of the query's time).
    tf_part = ("t.idf * p.tf * (%(k1)s::float8 + 1) / (p.tf + %(k1)s::float8 * (1 - %(b)s::float8 + "
               "%(b)s::float8 * p.length / %(avgdl)s::float8))")
    return f"""
        WITH terms AS MATERIALIZED (
            SELECT x.lexeme COLLATE "C" AS lexeme, x.idf, x.seed
            FROM unnest(%(lexemes)s::text[], %(idf)s::float8[], %(seed)s::bool[]) AS x(lexeme, idf, seed)
        ),
        seeded AS MATERIALIZED (
            SELECT p.chunk_id, p.document_id, sum({tf_part}) AS bm25, sum(t.idf) AS matched
            FROM terms t
            JOIN knowledge_posting p ON p.lexeme = t.lexeme
            JOIN knowledge_document d ON d.id = p.document_id
            WHERE t.seed AND {where}
            GROUP BY p.chunk_id, p.document_id
            ORDER BY sum({tf_part}) * sum(t.idf) DESC, p.chunk_id
            LIMIT %(prefilter)s
        ),
        rest AS (
            SELECT s.chunk_id, sum({tf_part}) AS bm25, sum(t.idf) AS matched
            FROM seeded s CROSS JOIN terms t
            JOIN knowledge_posting p ON p.chunk_id = s.chunk_id AND p.lexeme = t.lexeme
            WHERE NOT t.seed
            GROUP BY s.chunk_id
        ),
        scored AS (
            SELECT s.chunk_id, s.document_id, s.bm25 + coalesce(r.bm25, 0) AS bm25,
                   (s.matched + coalesce(r.matched, 0)) / %(total_idf)s AS coverage
            FROM seeded s LEFT JOIN rest r ON r.chunk_id = s.chunk_id
        ),
        top AS (
            SELECT chunk_id, document_id, bm25 * power(coverage, %(power)s) AS score, coverage
            FROM scored ORDER BY score DESC, chunk_id LIMIT %(limit)s
        )
        SELECT top.chunk_id, top.document_id, top.score, c.injection_flagged, top.coverage
        FROM top JOIN knowledge_chunk c ON c.id = top.chunk_id
        ORDER BY top.score DESC, top.chunk_id
    """


# --- Results ------------------------------------------------------------------------


def _hydrate(ranked: Iterable[Ranked]) -> list[SearchResult]:
    ranked = list(ranked)
    # Only the columns a result shows (a chunk's vector and tsvector are most of its row), in
    # plain SQL like the searches: the ORM's own work was most of this step's time.
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.id, d.title, c.heading_path, c.location, c.text FROM knowledge_chunk c "
                       "JOIN knowledge_document d ON d.id = c.document_id WHERE c.id = ANY(%s)",
                       [[r.chunk_id for r in ranked]])
        chunks = {row[0]: row[1:] for row in cursor.fetchall()}
    return [
        SearchResult(
            chunk_id=r.chunk_id, document_id=r.document_id, title=chunks[r.chunk_id][0],
            heading_path=chunks[r.chunk_id][1], location=chunks[r.chunk_id][2], text=chunks[r.chunk_id][3],
            score=r.score, dense_score=r.dense, text_score=r.text, injection_flagged=r.flagged,
        )
        for r in ranked
        if r.chunk_id in chunks  # a document re-indexed in between loses its old chunks
    ]


def _observe(started: float, *, mode: str, collection: str, query: str, results: int, confidence: float) -> float:
    seconds = time.perf_counter() - started
    RETRIEVAL_SECONDS.labels(mode=mode).observe(seconds)
    took_ms = round(seconds * 1000, 2)
    # The query text stays out of the logs: it is customer data.
    log.info("knowledge search", extra={"mode": mode, "collection": collection, "query_chars": len(query),
                                        "results": results, "confidence": confidence, "took_ms": took_ms})
    return took_ms
