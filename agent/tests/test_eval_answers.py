"""`manage.py eval_answers` on a small slice of the Samsung e-manual set, through the real pipeline."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from agent.management.commands.eval_answers import overlap_recall
from knowledge.models import Chunk, Document

DATASET = Path(settings.BASE_DIR).parent / "shared" / "datasets" / "emanual_samsung"
SECTIONS = 40
QUERIES = 15


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


@pytest.fixture
def small_dataset(tmp_path: Path) -> Path:
    """The first dev queries, their relevant sections, and other sections up to 40."""
    if not DATASET.is_dir():
        pytest.skip(f"the e-manual dataset is not at {DATASET}")
    with (DATASET / "qrels.tsv").open(encoding="utf-8", newline="") as handle:
        qrels = list(csv.DictReader(handle, delimiter="\t"))
    relevant = {}
    for row in qrels:
        relevant.setdefault(row["query_id"], set()).add(row["doc_id"])
    queries = [q for q in read_jsonl(DATASET / "queries_dev.jsonl") if q["id"] in relevant][:QUERIES]
    wanted = set().union(*(relevant[q["id"]] for q in queries))
    corpus = read_jsonl(DATASET / "corpus.jsonl")
    others = [row for row in corpus if row["id"] not in wanted and row["text"].strip()]
    sections = [row for row in corpus if row["id"] in wanted] + others[: SECTIONS - len(wanted)]
    folder = tmp_path / "emanual_small"
    folder.mkdir()
    write_jsonl(folder / "corpus.jsonl", sections)
    write_jsonl(folder / "queries_dev.jsonl", queries)
    ids = {q["id"] for q in queries}
    write_jsonl(folder / "answers.jsonl", [a for a in read_jsonl(DATASET / "answers.jsonl") if a["query_id"] in ids])
    rows = ["query_id\tdoc_id\tscore"] + [f"{r['query_id']}\t{r['doc_id']}\t{r['score']}" for r in qrels
                                          if r["query_id"] in ids]
    (folder / "qrels.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


@pytest.mark.django_db(transaction=True)
def test_it_ingests_the_corpus_and_reports_both_rates(small_dataset, tmp_path):
    report_path, out = tmp_path / "report.json", io.StringIO()
    call_command("eval_answers", "--dataset", str(small_dataset), "--split", "dev", "--limit", "10",
                 "--json", str(report_path), stdout=out)
    report = json.loads(report_path.read_text())
    assert {"answer_overlap_rate", "citation_hit_rate", "n", "split"} <= set(report)
    assert report["n"] == 10 and report["split"] == "dev"
    assert 0.0 <= report["answer_overlap_rate"] <= 1.0 and 0.0 <= report["citation_hit_rate"] <= 1.0
    assert 0.0 <= report["not_found_rate"] <= 1.0
    assert 0 < report["median_words"] <= report["max_words"]
    documents = Document.objects.filter(collection="eval-emanual_small")
    assert documents.filter(status=Document.Status.READY).count() == SECTIONS
    assert Chunk.objects.filter(document__in=documents).count() >= SECTIONS
    assert "answer_overlap_rate" in out.getvalue() and "citation_hit_rate" in out.getvalue()


def test_it_refuses_a_dataset_without_reference_answers(small_dataset):
    (small_dataset / "answers.jsonl").unlink()
    with pytest.raises(CommandError, match="answers.jsonl"):
        call_command("eval_answers", "--dataset", str(small_dataset), stdout=io.StringIO())


def test_overlap_counts_reference_tokens_without_our_label_or_citation_markers():
    reference = "From Settings, tap Display > Screen timeout."
    assert overlap_recall("From our help centre:\n\nFrom Settings, tap Display > Screen timeout. [1]", reference) == 1.0
    assert overlap_recall("tap", "tap tap") == 0.5, "tokens are counted as a multiset"
    assert overlap_recall("our help centre 1", "help") == 1.0
    assert overlap_recall("From our help centre: [1]", "our centre") == 0.0
