"""Ingestion throughput: upload → ready through the real pipeline, against raw model.encode.

Builds a few hundred pages of Markdown from a real corpus (SciFact abstracts, grouped
into long documents with headings), ingests them with the same services and task the
admin uses (run inline, so the figure is the pipeline's own cost, not queueing), and
encodes the very same chunk texts with `model.encode` in the same run.

    python bench/ingest.py [--pages 300] [--json PATH]

Runs on its own embedded database under var/bench-ingest so it never touches your data.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "datasets" / "scifact" / "corpus.jsonl"
WORDS_PER_PAGE = 500
TARGET_RATIO = 0.85


def setup_django() -> None:
    common.setup_django("bench-ingest", CELERY_TASK_ALWAYS_EAGER="true")


def build_documents(pages: int, per_document: int = 15) -> list[tuple[str, bytes]]:
    """Markdown documents of `per_document` pages, each abstract a section under its title."""
    rows = [json.loads(line) for line in CORPUS.read_text().splitlines()]
    documents, body, words, number = [], [], 0, 0
    for row in rows:
        body.append(f"## {row['title'].strip()}\n\n{row['text'].strip()}\n")
        words += len(row["text"].split())
        if words >= per_document * WORDS_PER_PAGE:
            number += 1
            documents.append((f"bench-{number:03d}.md", (f"# Research digest {number}\n\n" + "\n".join(body)).encode()))
            body, words = [], 0
            if number * per_document >= pages:
                break
    return documents


def ingest_all(documents: list[tuple[str, bytes]]) -> tuple[float, int]:
    from django.db import transaction

    from knowledge.models import Chunk, Document
    from knowledge.services import document_create

    Document.objects.filter(collection="bench-ingest").delete()
    started = time.perf_counter()
    for filename, data in documents:
        with transaction.atomic():  # on_commit → the ingestion task runs inline
            document_create(data=data, filename=filename, collection="bench-ingest")
    elapsed = time.perf_counter() - started
    ready = Document.objects.filter(collection="bench-ingest", status="ready").count()
    if ready != len(documents):
        raise SystemExit(f"only {ready} of {len(documents)} documents became ready")
    return elapsed, Chunk.objects.filter(document__collection="bench-ingest").count()


def raw_encode_rate() -> tuple[float, int]:
    from knowledge.embeddings import encode, get_model
    from knowledge.models import Chunk
    from knowledge.services import embedding_text

    rows = Chunk.objects.filter(document__collection="bench-ingest").select_related("document")
    texts = [embedding_text(c.document.title, c) for c in rows]
    get_model()
    started = time.perf_counter()
    encode(texts)
    return len(texts) / (time.perf_counter() - started), len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    setup_django()
    from knowledge.embeddings import encode, get_model

    get_model()
    encode(["warm up the model and its thread pool"] * 8)
    documents = build_documents(args.pages)
    elapsed, chunks = ingest_all(documents)
    pipeline_rate = chunks / elapsed
    encode_rate, _ = raw_encode_rate()
    ratio = pipeline_rate / encode_rate
    print(f"documents: {len(documents)} (~{args.pages} pages of {WORDS_PER_PAGE} words), chunks: {chunks}")
    print(f"pipeline (upload → ready): {pipeline_rate:7.1f} chunks/s  ({elapsed:.1f} s)")
    print(f"raw model.encode:          {encode_rate:7.1f} chunks/s  (same texts, same run)")
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(f"ratio: {ratio:.3f}  ({verdict} the target ≥ {TARGET_RATIO})")
    result = {"pipeline_chunks_per_s": round(pipeline_rate, 2), "encode_chunks_per_s": round(encode_rate, 2),
              "ratio": round(ratio, 4), "chunks": chunks, "documents": len(documents)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
