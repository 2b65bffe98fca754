"""Search latency and HNSW recall at 10k and 100k chunks of real embeddings, against ChromaDB.

Chunks are overlapping sentence windows of real corpora (SciFact abstracts and the
Samsung e-manual), encoded once with the product's model; the vectors are cached in
var/bench-search/vectors-*.npy so later runs skip the encoding. For each size the chunks
are loaded into the product's own table (HNSW built after the load), then the same
real queries run as: HNSW (`ORDER BY embedding <=> q`), exact (index scans off), the
product's hybrid search, and ChromaDB (in its own virtualenv, var/bench-venv, from
requirements-bench.in) on the very same vectors.

    python bench/search.py [--sizes 10000,100000] [--queries 200] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"
WORK = ROOT / "var" / "bench-search"
COLLECTION = "bench-search"
TARGET_RECALL, TARGET_P95_MS = 0.95, 20.0


def setup_django() -> None:
    common.setup_django("bench-search")


def windows(limit: int) -> list[str]:
    """Overlapping windows of 2, then 1, then 3 sentences of real text, up to `limit`."""
    rows = [json.loads(line) for name in ("scifact", "emanual_samsung")
            for line in (DATASETS / name / "corpus.jsonl").read_text().splitlines()]
    out: list[str] = []
    for width in (2, 1, 3):
        for row in rows:
            sentences = [s for s in re.split(r"(?<=[.!?])\s+", row["text"]) if len(s.split()) > 3]
            starts = range(max(1, len(sentences) - width + 1))
            out += [f"{row['title']}\n{' '.join(sentences[i:i + width])}" for i in starts]
            if len(out) >= limit:
                return out[:limit]
    return out


def cached_vectors(texts: list[str]) -> np.ndarray:
    path = WORK / f"vectors-{len(texts)}.npy"
    if path.exists():
        return np.load(path)
    from knowledge.embeddings import encode

    print(f"encoding {len(texts)} chunks once (cached in {path}) …", flush=True)
    vectors = encode(texts, batch_size=128).astype(np.float32)
    np.save(path, vectors)
    return vectors


def real_queries(count: int) -> list[str]:
    rows = []
    for name in ("scifact", "emanual_samsung"):
        rows += [json.loads(line)["text"] for line in (DATASETS / name / "queries.jsonl").read_text().splitlines()]
    return rows[::max(1, len(rows) // count)][:count]


def load(texts: list[str], vectors: np.ndarray) -> None:
    """Replace the bench collection with these chunks; build the HNSW index after the load."""
    from django.db import connection

    from knowledge.models import Chunk, Document
    from knowledge.retrieval import TITLE_TF_WEIGHT
    from knowledge.services import POSTINGS_SQL

    Document.objects.filter(collection=COLLECTION).delete()
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS chunk_embedding_hnsw")
    per_doc = 100
    for start in range(0, len(texts), per_doc):
        doc = Document.objects.create(title=f"bench {start}", content_hash=f"bench-{len(texts)}-{start}",
                                      collection=COLLECTION, status="ready")
        Chunk.objects.bulk_create([Chunk(document=doc, ordinal=i, text=t, embedding=v) for i, (t, v) in
                                   enumerate(zip(texts[start:start + per_doc], vectors[start:start + per_doc]))])
    with connection.cursor() as cursor:
        cursor.execute("UPDATE knowledge_chunk SET search_vector = to_tsvector('english', text) "
                       "WHERE search_vector IS NULL")
        ids = list(Document.objects.filter(collection=COLLECTION).values_list("id", flat=True))
        cursor.execute(POSTINGS_SQL, {"document_ids": ids, "title_tf": TITLE_TF_WEIGHT})  # full-text reads these
        cursor.execute("SET maintenance_work_mem = '1GB'")
        cursor.execute("CREATE INDEX chunk_embedding_hnsw ON knowledge_chunk USING hnsw (embedding vector_cosine_ops) "
                       "WITH (m = 16, ef_construction = 64)")
        cursor.execute("ANALYZE knowledge_chunk")
        cursor.execute("VACUUM ANALYZE knowledge_posting")  # index-only scans need the visibility map


def timed_ids(sql_settings: list[str], vector: np.ndarray) -> tuple[float, list[int]]:
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        for statement in sql_settings:
            cursor.execute(statement)
        started = time.perf_counter()
        cursor.execute("SELECT id FROM knowledge_chunk ORDER BY embedding <=> %s::vector LIMIT 10",
                       ["[" + ",".join(f"{x:.6f}" for x in vector) + "]"])
        ids = [row[0] for row in cursor.fetchall()]
    return 1000 * (time.perf_counter() - started), ids


def percentiles(samples: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(samples, 50)), 3), "p95_ms": round(float(np.percentile(samples, 95)), 3)}


def recall(found: list[list], truth: list[list]) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True) if t]))


def measure_postgres(queries: list[str], qvecs: np.ndarray) -> tuple[dict, list[list[int]]]:
    from knowledge.retrieval import EF_SEARCH, search

    exact = [timed_ids(["SET LOCAL enable_indexscan = off"], v) for v in qvecs]
    hnsw = [timed_ids([f"SET LOCAL hnsw.ef_search = {EF_SEARCH}"], v) for v in qvecs]
    hybrid = []
    for query in queries:
        started = time.perf_counter()
        search(query, k=10, mode="hybrid", collection=COLLECTION)
        hybrid.append(1000 * (time.perf_counter() - started))
    truth = [ids for _, ids in exact]
    return {
        "hnsw": {**percentiles([t for t, _ in hnsw]), "recall@10": round(recall([i for _, i in hnsw], truth), 4)},
        "exact": {**percentiles([t for t, _ in exact]), "recall@10": 1.0},
        "hybrid": percentiles(hybrid),
    }, truth


CHROMA_SCRIPT = """
import json, sys, time, tempfile
import numpy as np, chromadb
vectors, queries = np.load(sys.argv[1]), np.load(sys.argv[2])
client = chromadb.PersistentClient(path=tempfile.mkdtemp())
col = client.create_collection("bench", metadata={"hnsw:space": "cosine"})
for s in range(0, len(vectors), 5000):
    col.add(ids=[str(i) for i in range(s, min(s + 5000, len(vectors)))], embeddings=vectors[s:s + 5000].tolist())
col.query(query_embeddings=[queries[0].tolist()], n_results=10)
times, ids = [], []
for q in queries:
    t = time.perf_counter()
    r = col.query(query_embeddings=[q.tolist()], n_results=10)
    times.append(1000 * (time.perf_counter() - t))
    ids.append([int(i) for i in r["ids"][0]])
print(json.dumps({"times": times, "ids": ids}))
"""


def ensure_bench_venv() -> Path:
    python = ROOT / "var" / "bench-venv" / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(python.parent.parent)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(ROOT / "requirements-bench.in")],
                       check=True)
    return python


def measure_chroma(vectors: np.ndarray, qvecs: np.ndarray, truth_positions: list[list[int]]) -> dict:
    np.save(WORK / "chroma-vectors.npy", vectors)
    np.save(WORK / "chroma-queries.npy", qvecs)
    out = subprocess.run([str(ensure_bench_venv()), "-c", CHROMA_SCRIPT, str(WORK / "chroma-vectors.npy"),
                          str(WORK / "chroma-queries.npy")], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {**percentiles(result["times"]), "recall@10": round(recall(result["ids"], truth_positions), 4)}


def run_size(size: int, all_texts: list[str], all_vectors: np.ndarray, queries: list[str], qvecs: np.ndarray) -> dict:
    from knowledge.models import Chunk

    texts, vectors = all_texts[:size], all_vectors[:size]
    load(texts, vectors)
    pg, truth = measure_postgres(queries, qvecs)
    # Chroma ids are positions in the vector array: map the exact Postgres ids to positions.
    id_to_position = {cid: pos for pos, cid in enumerate(
        Chunk.objects.filter(document__collection=COLLECTION).order_by("document_id", "ordinal")
        .values_list("id", flat=True))}
    chroma = measure_chroma(vectors, qvecs, [[id_to_position[i] for i in ids] for ids in truth])
    chroma["p50_ratio_vs_hnsw"] = round(chroma["p50_ms"] / pg["hnsw"]["p50_ms"], 3)
    return {**pg, "chroma": chroma}


def report(size: int, row: dict) -> None:
    print(f"\n{size:,} chunks")
    for name in ("hnsw", "exact", "hybrid", "chroma"):
        r = row[name]
        rec = f"  recall@10 {r['recall@10']:.3f}" if "recall@10" in r else ""
        print(f"  {name:7s} p50 {r['p50_ms']:7.2f} ms  p95 {r['p95_ms']:7.2f} ms{rec}")
    h = row["hnsw"]
    ok = h["recall@10"] >= TARGET_RECALL and h["p95_ms"] <= TARGET_P95_MS
    print(f"  HNSW target recall ≥ {TARGET_RECALL} at p95 ≤ {TARGET_P95_MS} ms: {'met' if ok else 'MISSED'}; "
          f"Chroma p50 / pgvector HNSW p50 = {row['chroma']['p50_ratio_vs_hnsw']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    setup_django()
    from knowledge.embeddings import encode

    sizes = [int(s) for s in args.sizes.split(",")]
    texts = windows(max(sizes))
    vectors = cached_vectors(texts)
    queries = real_queries(args.queries)
    qvecs = encode(queries).astype(np.float32)
    results = {}
    for size in sizes:
        results[str(size)] = run_size(size, texts, vectors, queries, qvecs)
        report(size, results[str(size)])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
