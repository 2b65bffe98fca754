"""Evaluate grounded-mode answers on a dataset with reference answers (answers.jsonl).

The corpus goes through the real pipeline into the collection eval_retrieval uses
(`eval-<dataset folder name>`, shared and reused). Each query then takes the agent's
own grounded path: knowledge.retrieval.search with the agent's k on that collection,
then the orchestrator's grounded extract (confidence gate, agent.grounded.compose).

- answer_overlap_rate: share of answers whose token-overlap recall against the
  reference answer is at least 0.5. Tokens are lowercase [a-z0-9]+ runs counted as a
  multiset on both sides: recall = sum over reference tokens of min(count in answer,
  count in reference) / number of reference tokens, so repeating a word does not
  help. The "From our help centre:" label and [n] markers are stripped first; a
  "not found" reply scores 0.
- citation_hit_rate: share of answers citing at least one relevant section (qrels).
- not_found_rate: share answered "not found" because retrieval confidence was under
  the escalation rules' low-confidence threshold.
"""
from __future__ import annotations

import json
import re
import statistics
import time
from collections import Counter
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from agent import grounded
from agent.guardrails import redact_pii
from agent.orchestrator import _grounded_extract  # the agent's own grounded step, not a copy
from agent.schema import AgentContext
from agent.tools.knowledge_search import SEARCH_K, search_query
from knowledge import retrieval
from knowledge.management.commands.eval_retrieval import SPLIT_FILES, ensure_corpus, read_jsonl, read_qrels
from knowledge.models import Document

OVERLAP_THRESHOLD = 0.5
_TOKEN = re.compile(r"[a-z0-9]+")
_MARKER = re.compile(r"\[\d{1,2}\]")


def answer_tokens(text: str) -> Counter[str]:
    """The scored tokens of an answer or a reference: label and citation markers removed."""
    text = _MARKER.sub(" ", text.replace(grounded.LABEL, " "))
    return Counter(_TOKEN.findall(text.lower()))


def overlap_recall(answer: str, reference: str) -> float:
    """Multiset recall of the reference's tokens in the answer."""
    ours, wanted = answer_tokens(answer), answer_tokens(reference)
    total = sum(wanted.values())
    return sum(min(count, ours[token]) for token, count in wanted.items()) / total if total else 0.0


def grounded_answer(text: str, collection: str) -> tuple[grounded.Extract, retrieval.SearchResponse]:
    """What the agent answers in grounded mode, and the search it answered from."""
    ctx = AgentContext(session_id=0, session_public_id="", message_id=0, text=text, store=None)  # type: ignore[arg-type]
    ctx.redacted_text = redact_pii(text).text
    ctx.search = retrieval.search(search_query(ctx), k=SEARCH_K, collection=collection)
    return _grounded_extract(ctx), ctx.search


def cited_documents(extract: grounded.Extract, search: retrieval.SearchResponse, external: dict[int, str]) -> set[str]:
    """External ids of the documents the answer cites ([n] is the n-th search result)."""
    results = search.results
    return {external[results[n - 1].document_id] for n in extract.cited if 0 < n <= len(results)}


class Command(BaseCommand):
    help = "Evaluate grounded-mode answers (token overlap with reference answers, citation hits)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dataset", required=True, type=Path)
        parser.add_argument("--split", choices=("dev", "test"), default="dev")
        parser.add_argument("--json", type=Path, dest="json_path")
        parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N queries")

    def handle(self, *args: object, dataset: Path, split: str, json_path: Path | None, limit: int | None,
               **options: object) -> None:
        queries, qrels, references = self._load(dataset, split, limit)
        collection = f"eval-{dataset.resolve().name}"  # the collection eval_retrieval builds and reuses
        ingest = ensure_corpus(dataset, collection, self.stdout.write)
        if ingest["reused"]:
            self.stdout.write(f"reusing collection {collection} ({ingest['documents']} documents)")
        report = self._evaluate(queries, qrels, references, collection)
        report = {**report, "split": split, "dataset": dataset.name, "collection": collection, "tokens": "multiset",
                  "min_confidence": settings.GROUNDED_MIN_CONFIDENCE}
        self._print(report)
        if json_path is not None:
            json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    def _load(self, dataset: Path, split: str, limit: int | None) -> tuple[list[dict], dict, dict[str, str]]:
        paths = [dataset / "corpus.jsonl", dataset / SPLIT_FILES[split], dataset / "qrels.tsv",
                 dataset / "answers.jsonl"]
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise CommandError(f"missing dataset file(s): {', '.join(missing)}")
        qrels = read_qrels(paths[2])
        references = {str(row["query_id"]): row["answer"] for row in read_jsonl(paths[3])}
        queries = [{**q, "id": str(q["id"])} for q in read_jsonl(paths[1])]
        # Scorable queries only: a reference answer and at least one relevant section.
        queries = [q for q in queries if q["id"] in references
                   and any(grade > 0 for grade in qrels.get(q["id"], {}).values())]
        return (queries[:limit] if limit is not None else queries), qrels, references

    def _evaluate(self, queries: list[dict], qrels: dict, references: dict[str, str],
                  collection: str) -> dict[str, object]:
        external = dict(Document.objects.filter(collection=collection).values_list("pk", "external_id"))
        overlaps = hits = not_found = 0
        words: list[int] = []
        started = time.perf_counter()
        for done, query in enumerate(queries, start=1):
            extract, search = grounded_answer(query["text"], collection)
            relevant = {doc for doc, grade in qrels[query["id"]].items() if grade > 0}
            if extract.text == grounded.NOT_FOUND:
                not_found += 1
            else:
                overlaps += overlap_recall(extract.text, references[query["id"]]) >= OVERLAP_THRESHOLD
                hits += bool(relevant & cited_documents(extract, search, external))
                words.append(sum(answer_tokens(extract.text).values()))
            if done % 50 == 0:
                self.stdout.write(f"  {done}/{len(queries)} queries ({time.perf_counter() - started:.0f} s)")
        n = len(queries)
        return {"answer_overlap_rate": round(overlaps / n, 4) if n else 0.0,
                "citation_hit_rate": round(hits / n, 4) if n else 0.0,
                "n": n, "not_found_rate": round(not_found / n, 4) if n else 0.0,
                "median_words": statistics.median(words) if words else 0,
                "max_words": max(words, default=0)}

    def _print(self, report: dict[str, object]) -> None:
        self.stdout.write(f"\n{report['dataset']}, split {report['split']}, {report['n']} queries (grounded mode)")
        for name, target in (("answer_overlap_rate", 0.60), ("citation_hit_rate", 0.75)):
            self.stdout.write(f"{name:<22}{report[name]:>8.4f}   (target >= {target:.2f})")
        self.stdout.write(f"{'not_found_rate':<22}{report['not_found_rate']:>8.4f}   "
                          f"(confidence < {report['min_confidence']})")
        self.stdout.write(f"{'median_words':<22}{report['median_words']:>8}   (max {report['max_words']})")
