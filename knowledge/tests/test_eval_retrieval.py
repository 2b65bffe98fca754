"""The eval_retrieval command on a 40-section slice of the E-Manual dataset."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import call_command

from knowledge.management.commands.eval_retrieval import METRICS, MODES, query_metrics
from knowledge.models import Chunk, Document

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(180)]

SOURCE = Path("/work/shared/datasets/emanual_samsung")


def write_slice(folder: Path, documents: int = 40, queries: int = 12) -> Path:
    """The first dev queries, their relevant sections, and other sections up to `documents`."""
    qrels = [line.split("\t") for line in (SOURCE / "qrels.tsv").read_text().splitlines()[1:]]
    dev = [json.loads(line) for line in (SOURCE / "queries_dev.jsonl").read_text().splitlines()][:queries]
    wanted = {doc for query_id, doc, _ in qrels if query_id in {q["id"] for q in dev}}
    corpus = [json.loads(line) for line in (SOURCE / "corpus.jsonl").read_text().splitlines()]
    chosen = [c for c in corpus if c["id"] in wanted]
    chosen += [c for c in corpus if c["id"] not in wanted and c["text"].strip()][: documents - len(chosen)]
    folder.mkdir()
    (folder / "corpus.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chosen))
    (folder / "queries_dev.jsonl").write_text("".join(json.dumps(q) + "\n" for q in dev))
    kept = [row for row in qrels if row[0] in {q["id"] for q in dev}]
    (folder / "qrels.tsv").write_text("query_id\tdoc_id\tscore\n" + "".join("\t".join(row) + "\n" for row in kept))
    return folder


@pytest.mark.skipif(not SOURCE.is_dir(), reason="the shared E-Manual dataset is not here")
def test_it_reports_three_methods_and_reuses_the_ingested_collection(tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    dataset = write_slice(tmp_path / "emanual_slice")
    out = tmp_path / "out.json"

    call_command("eval_retrieval", "--dataset", str(dataset), "--limit", "10", "--json", str(out))
    first = json.loads(out.read_text())
    chunks = set(Chunk.objects.values_list("pk", flat=True))
    call_command("eval_retrieval", "--dataset", str(dataset), "--limit", "10", "--json", str(out))
    second = json.loads(out.read_text())

    for mode in MODES:
        assert set(first[mode]) >= set(METRICS)
        assert all(0.0 <= first[mode][name] <= 1.0 for name in METRICS)
    assert first["n"] == 10 and first["split"] == "dev"
    assert first["ingest"]["reused"] is False and first["ingest"]["ingested"] == 40
    assert Document.objects.filter(collection="eval-emanual_slice", status=Document.Status.READY).count() == 40
    assert first["hybrid"]["recall@10"] >= 0.8  # a 40-section corpus is easy
    assert second["ingest"]["reused"] is True
    assert set(Chunk.objects.values_list("pk", flat=True)) == chunks
    assert all(second[mode][name] == first[mode][name] for mode in MODES for name in METRICS)


def test_metrics_follow_the_baseline_definitions():
    relevant = {"a": 1, "b": 1}

    perfect = query_metrics(["a", "b", "c"], relevant)
    second_only = query_metrics(["x", "b"] + [f"n{i}" for i in range(10)], relevant)

    assert perfect == {"recall@5": 1.0, "recall@10": 1.0, "ndcg@10": 1.0, "mrr@10": 1.0}
    assert second_only["recall@5"] == 0.5 and second_only["mrr@10"] == 0.5
    assert second_only["ndcg@10"] == pytest.approx((1 / 1.5849625) / (1 + 1 / 1.5849625), rel=1e-6)
    assert query_metrics([f"n{i}" for i in range(10)] + ["a"], relevant)["recall@10"] == 0.0
