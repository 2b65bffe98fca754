"""Bulk import of a corpus (evaluation sets, migrations from another help desk).

The documents go through the same pipeline as an upload (convert → chunk → embed →
replace chunks atomically, with injection flags and search vectors), but the
embedding step runs over the chunks of many documents at once: one Celery task
per document costs minutes on a 5,000-document corpus, mostly in model calls on
tiny batches.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile

from knowledge import embeddings
from knowledge.chunking import ChunkDraft
from knowledge.conversion import ConversionError
from knowledge.models import Document
from knowledge.services import (
    _convert_and_chunk,
    _replace_chunks,
    _set_state,
    content_hash,
    embedding_text,
)

log = logging.getLogger(__name__)

DOCUMENTS_PER_ROUND = 500  # bounds memory; the model still sees large, length-sorted batches


@dataclass(frozen=True)
class CorpusEntry:
    external_id: str
    title: str
    text: str


@dataclass(frozen=True)
class IngestSummary:
    ingested: int
    failed: int
    chunks: int


def corpus_markdown(entry: CorpusEntry, collection: str) -> bytes:
    """The entry as a Markdown file: "# title", then the text.

    Document.content_hash is unique across all collections and corpora repeat
    sections word for word, so a comment line names the entry; the chunker drops
    comment lines, so it is never indexed.
    """
    marker = f"<!-- corpus entry: {collection}/{entry.external_id} -->"
    return f"{marker}\n# {entry.title.strip()}\n\n{entry.text.strip()}\n".encode()


def documents_import(*, entries: Iterable[CorpusEntry], collection: str, tags: Sequence[str] = ()) -> list[int]:
    """Create or update one Document per entry, keyed by (collection, external_id).

    Nothing is queued: returns the ids that still need ingesting (new, changed, or
    interrupted before they were indexed), for documents_ingest_many.
    """
    existing = {d.external_id: d for d in Document.objects.filter(collection=collection).exclude(external_id="")}
    pending: list[int] = []
    new: list[Document] = []
    for entry in entries:
        data = corpus_markdown(entry, collection)
        digest = content_hash(data)
        document = existing.get(entry.external_id)
        if document is not None and document.content_hash == digest:
            if not _is_settled(document):
                pending.append(document.pk)
            continue
        document = document or Document(collection=collection, external_id=entry.external_id)
        _store_content(document, entry, data, digest, tags)
        if document.pk:
            document.save()
            pending.append(document.pk)
        else:
            new.append(document)
    pending += [d.pk for d in Document.objects.bulk_create(new, batch_size=500)]
    return pending


def _is_settled(document: Document) -> bool:
    # FAILED is settled too: a changed entry resets its status, so it failed on this content.
    indexed = document.status == Document.Status.READY and document.indexed_hash == document.content_hash
    return indexed or document.status == Document.Status.FAILED


def _store_content(document: Document, entry: CorpusEntry, data: bytes, digest: str, tags: Sequence[str]) -> None:
    if document.file:
        document.file.delete(save=False)
    filename = f"{entry.external_id[:80] or 'entry'}.md"
    document.file.save(filename, ContentFile(data), save=False)
    document.title = (entry.title.strip() or entry.external_id)[:300]
    document.original_name = filename
    document.size, document.content_hash, document.tags = len(data), digest, list(tags)
    document.status, document.error, document.error_code = Document.Status.PENDING, "", ""


def documents_ingest_many(
    *, document_ids: Sequence[int], on_progress: Callable[[int, int], None] | None = None
) -> IngestSummary:
    """Ingest many documents, embedding their chunks together in large batches.

    Each document's chunks are swapped in with the same atomic step as a single
    upload, so an interrupted run leaves whole documents and can simply be rerun.
    """
    ingested = failed = chunks = 0
    for start in range(0, len(document_ids), DOCUMENTS_PER_ROUND):
        ids = document_ids[start : start + DOCUMENTS_PER_ROUND]
        drafted, round_failed = _chunk_round(ids)
        failed += round_failed
        texts = [embedding_text(doc.title, draft) for doc, drafts in drafted for draft in drafts]
        vectors = embeddings.encode(texts, batch_size=settings.EMBEDDING_BATCH_SIZE) if texts else []
        offset = 0
        for document, drafts in drafted:
            _replace_chunks(document, drafts, list(vectors[offset : offset + len(drafts)]))
            offset += len(drafts)
        ingested += len(drafted)
        chunks += offset
        if on_progress is not None:
            on_progress(start + len(ids), len(document_ids))
    return IngestSummary(ingested=ingested, failed=failed, chunks=chunks)


def _chunk_round(ids: Sequence[int]) -> tuple[list[tuple[Document, list[ChunkDraft]]], int]:
    """Convert and chunk each document; failures are recorded on the document and counted."""
    drafted, failed = [], 0
    for document in Document.objects.filter(pk__in=ids).order_by("pk"):
        if document.indexed_hash == document.content_hash:
            continue
        _set_state(document, status=Document.Status.PROCESSING, chunks_done=0, chunks_total=0)
        try:
            drafted.append((document, _convert_and_chunk(document)))
        except ConversionError as error:
            _set_state(document, status=Document.Status.FAILED, error_code=error.code, error=error.message)
            log.info("document failed", extra={"document_id": document.pk, "reason": error.code})
            failed += 1
    return drafted, failed
