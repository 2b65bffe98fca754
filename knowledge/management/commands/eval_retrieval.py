"""Evaluate retrieval on a BEIR-style dataset: dense, full text and hybrid side by side.

The corpus is ingested through the real pipeline (knowledge.bulk) into its own
collection, `eval-<dataset folder name>`, and reused on later runs. Metrics are at
document level: nDCG@10 with gains 2^rel - 1, recall@k = share of the relevant
documents found in the top k, MRR@10.
"""
from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from knowledge import retrieval
from knowledge.bulk import CorpusEntry, documents_import, documents_ingest_many
from knowledge.models import Document

MODES = ("dense", "fulltext", "hybrid")
METRICS = ("recall@5", "recall@10", "ndcg@10", "mrr@10")
SPLIT_FILES = {"dev": "queries_dev.jsonl", "test": "queries_test.jsonl", "all": "queries.jsonl"}
Qrels = dict[str, dict[str, int]]


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_qrels(path: Path) -> Qrels:
    qrels: Qrels = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            qrels.setdefault(row["query_id"], {})[row["doc_id"]] = int(row["score"])
    return qrels


def query_metrics(ranked: list[str], relevant: dict[str, int]) -> dict[str, float]:
    """The four metrics for one query; `ranked` holds document ids, best first."""
    wanted = {doc for doc, grade in relevant.items() if grade > 0}
    dcg = sum((2 ** relevant.get(doc, 0) - 1) / math.log2(i + 2) for i, doc in enumerate(ranked[:10]))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum((2**grade - 1) / math.log2(i + 2) for i, grade in enumerate(ideal))
    first = next((i for i, doc in enumerate(ranked[:10]) if doc in wanted), None)
    return {
        "recall@5": len(wanted & set(ranked[:5])) / len(wanted),
        "recall@10": len(wanted & set(ranked[:10])) / len(wanted),
        "ndcg@10": dcg / idcg if idcg else 0.0,
        "mrr@10": 1 / (first + 1) if first is not None else 0.0,
    }


def mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    return {name: round(sum(row[name] for row in rows) / len(rows), 4) if rows else 0.0 for name in METRICS}


def ensure_corpus(dataset: Path, collection: str, say: Callable[[str], None]) -> dict[str, object]:
    """Ingest the corpus into `collection` unless every entry is already there and settled."""
    entries = [CorpusEntry(str(row["id"]), row.get("title") or "", row.get("text") or "")
               for row in read_jsonl(dataset / "corpus.jsonl")]
    started = time.perf_counter()
    pending = documents_import(entries=entries, collection=collection, tags=["eval"])
    if not pending:
        return {"reused": True, "documents": len(entries), "seconds": 0.0}
    say(f"ingesting {len(pending)} of {len(entries)} documents into {collection}…")
    summary = documents_ingest_many(
        document_ids=pending, on_progress=lambda done, total: say(f"  {done}/{total} documents")
    )
    seconds = round(time.perf_counter() - started, 1)
    say(f"ingested {summary.ingested} documents ({summary.chunks} chunks, {summary.failed} failed) in {seconds} s")
    return {"reused": False, "documents": len(entries), "ingested": summary.ingested,
            "failed": summary.failed, "chunks": summary.chunks, "seconds": seconds}


def evaluate(queries: list[dict], qrels: Qrels, collection: str) -> dict[str, dict[str, float]]:
    """Run every query in every mode; returns the mean metrics (and latency) per mode."""
    external = dict(Document.objects.filter(collection=collection).values_list("pk", "external_id"))
    results: dict[str, dict[str, float]] = {}
    for mode in MODES:
        rows, took = [], 0.0
        for query in queries:
            response = retrieval.search_documents(query["text"], k=10, mode=mode, collection=collection)
            took += response.took_ms
            rows.append(query_metrics([external[hit.document_id] for hit in response.results], qrels[query["id"]]))
        results[mode] = {**mean_metrics(rows), "ms_per_query": round(took / max(len(queries), 1), 1)}
    return results


class Command(BaseCommand):
    help = "Evaluate dense, full-text and hybrid retrieval on a dataset (corpus.jsonl, queries, qrels.tsv)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dataset", required=True, type=Path)
        parser.add_argument("--split", choices=tuple(SPLIT_FILES), default="dev")
        parser.add_argument("--json", type=Path, dest="json_path")
        parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N queries")
        parser.add_argument("--queries", type=Path, default=None, dest="queries_path",
                            help="a JSONL of extra queries carrying their own qrels ({\"id\", \"text\", \"qrels\": "
                                 "{doc_id: grade}}), instead of the dataset's split")

    def handle(self, *args: object, dataset: Path, split: str, json_path: Path | None, limit: int | None,
               queries_path: Path | None, **options: object) -> None:
        if queries_path is None:
            queries, qrels = self._load(dataset, split, limit)
        else:
            queries, qrels = self._load_own(queries_path, limit)
            split = queries_path.name
        collection = f"eval-{dataset.resolve().name}"
        ingest = ensure_corpus(dataset, collection, self.stdout.write)
        if ingest["reused"]:
            self.stdout.write(f"reusing collection {collection} ({ingest['documents']} documents)")
        results = evaluate(queries, qrels, collection)
        self._print_table(dataset.name, split, len(queries), results)
        if json_path is not None:
            report = {**results, "dataset": dataset.name, "split": split, "n": len(queries),
                      "collection": collection, "ingest": ingest}
            json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    def _load(self, dataset: Path, split: str, limit: int | None) -> tuple[list[dict], Qrels]:
        paths = [dataset / "corpus.jsonl", dataset / SPLIT_FILES[split], dataset / "qrels.tsv"]
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise CommandError(f"missing dataset file(s): {', '.join(missing)}")
        qrels = read_qrels(paths[2])
        # Queries without a relevant document cannot be scored (BEIR skips them too).
        queries = [q for q in read_jsonl(paths[1]) if any(g > 0 for g in qrels.get(str(q["id"]), {}).values())]
        queries = [{**q, "id": str(q["id"])} for q in queries]
        return (queries[:limit] if limit is not None else queries), qrels

    def _load_own(self, path: Path, limit: int | None) -> tuple[list[dict], Qrels]:
        if not path.is_file():
            raise CommandError(f"missing queries file: {path}")
        rows = read_jsonl(path)[:limit]
        queries = [{"id": str(row["id"]), "text": row["text"]} for row in rows]
        return queries, {str(row["id"]): {str(doc): int(g) for doc, g in row["qrels"].items()} for row in rows}

    def _print_table(self, name: str, split: str, n: int, results: dict[str, dict[str, float]]) -> None:
        self.stdout.write(f"\n{name}, split {split}, {n} queries (document level)")
        self.stdout.write(f"{'method':<10}" + "".join(f"{m:>11}" for m in (*METRICS, "ms/query")))
        for mode in MODES:
            row = results[mode]
            self.stdout.write(f"{mode:<10}" + "".join(f"{row[m]:>11.4f}" for m in METRICS)
                              + f"{row['ms_per_query']:>11.1f}")
