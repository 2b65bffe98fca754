"""Writes on documents: create (dedupe, replace), re-index, and the ingestion pipeline."""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.utils import timezone

from knowledge import embeddings
from knowledge.chunking import ChunkDraft, chunk_markdown
from knowledge.conversion import ConversionError, convert_bytes
from knowledge.injection import detect_injection
from knowledge.models import DEFAULT_COLLECTION, Chunk, Document
from knowledge.retrieval import TITLE_TF_WEIGHT

log = logging.getLogger(__name__)


class DocumentRejected(Exception):
    """The upload cannot become a document; the message is shown to staff as is."""

    def __init__(self, message: str, existing: Document | None = None) -> None:
        super().__init__(message)
        self.existing = existing


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes
    title: str = ""


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def title_from_filename(filename: str) -> str:
    stem = Path(filename).stem.replace("_", " ").replace("-", " ").strip()
    return stem[:1].upper() + stem[1:] if stem else "Untitled"


def check_upload(*, data: bytes, filename: str) -> str:
    """Validate size and duplicates before anything is written; returns the hash."""
    if len(data) > settings.UPLOAD_MAX_MB * 1024 * 1024:
        raise DocumentRejected(f"{filename}: too large (max {settings.UPLOAD_MAX_MB} MB)")
    if not data.strip():
        raise DocumentRejected(f"{filename}: the file is empty")
    digest = content_hash(data)
    existing = Document.objects.filter(content_hash=digest).first()
    if existing is not None:
        raise DocumentRejected(f"{filename}: the same content is already uploaded as “{existing.title}”", existing)
    return digest


def document_create(
    *,
    data: bytes,
    filename: str,
    title: str = "",
    uploaded_by: object | None = None,
    collection: str = DEFAULT_COLLECTION,
    tags: Sequence[str] = (),
    external_id: str = "",
) -> Document:
    """Store an upload as a pending Document and queue its ingestion on commit.

    A different file under an existing title (in the same collection) replaces that
    document's content: its old chunks stay searchable until the new ones are ready.
    """
    digest = check_upload(data=data, filename=filename)
    title = (title or title_from_filename(filename)).strip()[:300]
    with transaction.atomic():
        document = Document.objects.select_for_update().filter(title=title, collection=collection).first()
        document = document or Document(title=title, collection=collection)
        if document.pk and document.file:
            document.file.delete(save=False)
        document.file.save(Path(filename).name or "document", ContentFile(data), save=False)
        document.original_name = Path(filename).name[:255]
        document.size, document.content_hash = len(data), digest
        document.status, document.error, document.error_code = Document.Status.PENDING, "", ""
        document.tags, document.external_id = list(tags), external_id
        document.uploaded_by = uploaded_by  # type: ignore[assignment]
        document.save()
        _enqueue_ingestion(document.pk)
    return document


def documents_create_many(*, uploads: Sequence[Upload], uploaded_by: object | None = None) -> tuple[list[Document], list[str]]:
    """Create one document per upload; a rejected file does not stop the others."""
    created, errors = [], []
    for upload in uploads:
        try:
            created.append(document_create(data=upload.data, filename=upload.filename, title=upload.title,
                                           uploaded_by=uploaded_by))
        except DocumentRejected as error:
            errors.append(str(error))
    return created, errors


def document_reindex(*, document: Document) -> None:
    """Rebuild the chunks from the stored file (old chunks stay until the new are in)."""
    Document.objects.filter(pk=document.pk).update(
        status=Document.Status.PENDING, indexed_hash="", error="", error_code="", chunks_done=0
    )
    _enqueue_ingestion(document.pk)


def _enqueue_ingestion(document_id: int) -> None:
    from knowledge.tasks import ingest_document

    transaction.on_commit(lambda: ingest_document.delay(document_id))


# --- The pipeline -------------------------------------------------------------


def document_ingest(*, document_id: int) -> None:
    """Convert, chunk, embed in batches and swap the chunks in atomically.

    Idempotent: a document already indexed from its current content is skipped, and
    a retried or redelivered run rebuilds the same chunks and replaces them whole.
    """
    document = Document.objects.filter(pk=document_id).first()
    if document is None or document.indexed_hash == document.content_hash:
        return
    _set_state(document, status=Document.Status.PROCESSING, chunks_done=0, chunks_total=0)
    try:
        drafts = _convert_and_chunk(document)
    except ConversionError as error:
        _set_state(document, status=Document.Status.FAILED, error_code=error.code, error=error.message)
        log.info("document failed", extra={"document_id": document_id, "reason": error.code})
        return
    vectors = _embed_with_progress(document, drafts)
    _replace_chunks(document, drafts, vectors)


def _set_state(document: Document, **fields: object) -> None:
    for name, value in fields.items():
        setattr(document, name, value)
    Document.objects.filter(pk=document.pk).update(**fields, updated_at=timezone.now())


def _convert_and_chunk(document: Document) -> list[ChunkDraft]:
    with document.file.open("rb") as handle:
        data = handle.read()
    converted = convert_bytes(
        data,
        document.original_name or document.file.name,
        max_bytes=settings.UPLOAD_MAX_MB * 1024 * 1024,
        max_unzipped_bytes=settings.UPLOAD_MAX_UNZIPPED_MB * 1024 * 1024,
        timeout_s=settings.CONVERSION_TIMEOUT_S,
    )
    drafts = chunk_markdown(converted.markdown, count_tokens=embeddings.count_tokens, title=document.title)
    if not drafts:
        raise ConversionError("empty", "empty after conversion")
    _set_state(document, content_type=converted.kind, chunks_total=len(drafts))
    return drafts


def embedding_text(title: str, draft: ChunkDraft) -> str:
    """What the model sees: the title and heading path give short chunks their context."""
    heading = " > ".join(part for part in (title, draft.heading_path) if part)
    return f"{heading}\n{draft.text}" if heading else draft.text


def _embed_with_progress(document: Document, drafts: list[ChunkDraft]) -> list:
    # Batches of similar length pad less: the model's time grows with the longest text
    # of a batch. Encoding in length order costs nothing in quality and gets within a
    # few percent of one sorted encode() over the whole document, while still
    # reporting progress after every batch.
    batch = settings.EMBEDDING_BATCH_SIZE
    order = sorted(range(len(drafts)), key=lambda i: drafts[i].token_count)
    vectors: list = [None] * len(drafts)
    for start in range(0, len(order), batch):
        indices = order[start : start + batch]
        encoded = embeddings.encode([embedding_text(document.title, drafts[i]) for i in indices])
        for index, vector in zip(indices, encoded, strict=True):
            vectors[index] = vector
        _set_state(document, chunks_done=min(start + batch, len(order)))
    return vectors


def _replace_chunks(document: Document, drafts: list[ChunkDraft], vectors: list) -> None:
    chunks = [
        Chunk(document=document, ordinal=d.ordinal, text=d.text, heading_path=d.heading_path[:1000],
              location=d.location[:100], token_count=d.token_count, embedding=v,
              injection_flagged=detect_injection(d.text).flagged)
        for d, v in zip(drafts, vectors, strict=True)
    ]
    with transaction.atomic():
        Document.objects.select_for_update().filter(pk=document.pk).first()
        Chunk.objects.filter(document=document).delete()
        Chunk.objects.bulk_create(chunks, batch_size=500)
        _fill_search_vectors(document.pk)
        _set_state(document, status=Document.Status.READY, indexed_hash=document.content_hash,
                   chunks_done=len(chunks), flagged_chunks=sum(c.injection_flagged for c in chunks),
                   indexed_at=timezone.now(), error="", error_code="")


# The inverted index full-text ranking reads (see knowledge.retrieval): one row per
# lexeme of each chunk, with its occurrence count (title/heading ones weighted).
POSTINGS_SQL = """
    INSERT INTO knowledge_posting (chunk_id, lexeme, document_id, tf, length)
    SELECT c.id, u.lexeme, c.document_id,
           coalesce((SELECT sum(CASE w WHEN 'A' THEN %(title_tf)s ELSE 1.0 END) FROM unnest(u.weights) AS w), 1),
           greatest(c.token_count, 1)
    FROM knowledge_chunk c CROSS JOIN LATERAL unnest(c.search_vector) AS u
    WHERE c.document_id = ANY(%(document_ids)s)
"""


def _fill_search_vectors(document_id: int) -> None:
    # Title and heading weigh more (A) than the body (B) in ts_rank_cd.
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE knowledge_chunk c SET search_vector =
                setweight(to_tsvector('english', coalesce(d.title, '') || ' ' || coalesce(c.heading_path, '')), 'A')
                || setweight(to_tsvector('english', c.text), 'B')
            FROM knowledge_document d
            WHERE c.document_id = d.id AND d.id = %s
            """,
            [document_id],
        )
        cursor.execute(POSTINGS_SQL, {"document_ids": [document_id], "title_tf": TITLE_TF_WEIGHT})
