"""Knowledge documents and their embedded chunks."""
from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from pgvector.django import HnswIndex, VectorField

DEFAULT_COLLECTION = "default"


class Document(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    title = models.CharField(max_length=300)
    file = models.FileField(upload_to="documents/%Y/%m/", blank=True)
    original_name = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(max_length=32, blank=True, help_text="Sniffed kind: pdf, docx, markdown…")
    size = models.PositiveBigIntegerField(default=0)
    content_hash = models.CharField(max_length=64, unique=True)
    # Hash of the content the current chunks were built from; equal to content_hash once indexed.
    indexed_hash = models.CharField(max_length=64, blank=True)
    collection = models.CharField(max_length=100, default=DEFAULT_COLLECTION, db_index=True)
    tags = ArrayField(models.CharField(max_length=50), default=list, blank=True)
    external_id = models.CharField(max_length=200, blank=True, db_index=True, help_text="Id in an imported corpus")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    error_code = models.CharField(max_length=32, blank=True)
    error = models.CharField(max_length=500, blank=True)
    chunks_done = models.PositiveIntegerField(default=0)
    chunks_total = models.PositiveIntegerField(default=0)
    flagged_chunks = models.PositiveIntegerField(default=0)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    indexed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            GinIndex(fields=["tags"], name="document_tags_gin"),
            # Full-text search checks every posting's document against the scope: from this
            # index alone (an index-only scan) instead of a heap visit to a wide row each time.
            models.Index(fields=["id"], include=["collection", "status", "tags"], name="document_scope_cover"),
        ]

    def __str__(self) -> str:
        return self.title

    def progress_percent(self) -> int:
        if self.status == self.Status.READY:
            return 100
        return int(100 * self.chunks_done / self.chunks_total) if self.chunks_total else 0


class Chunk(models.Model):
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    ordinal = models.PositiveIntegerField()
    text = models.TextField()
    heading_path = models.CharField(max_length=1000, blank=True)
    location = models.CharField(max_length=100, blank=True, help_text="page 3, sheet Orders, slide 2…")
    token_count = models.PositiveIntegerField(default=0)
    embedding = VectorField(dimensions=384)
    # Filled in the same transaction as the insert (title/heading weighted A, body B); the
    # postings (below) are derived from it. Not indexed: full-text search reads the postings.
    search_vector = SearchVectorField(null=True)
    injection_flagged = models.BooleanField(default=False, db_index=True)

    class Meta:
        ordering = ["document_id", "ordinal"]
        constraints = [
            models.UniqueConstraint(fields=["document", "ordinal"], name="chunk_unique_ordinal"),
        ]
        indexes = [
            HnswIndex(
                name="chunk_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.ordinal}"


class Posting(models.Model):
    """One lexeme of one chunk: the inverted index that full-text search ranks with (BM25).

    Derived from the chunk's search_vector in the transaction that stores the chunk, so
    ranking reads a few narrow index rows per query word instead of unpacking the
    tsvector of every matching chunk. `document` and `length` are copies of the chunk's,
    for the scope filter and BM25's length normalisation without touching the wide chunk rows.
    """

    pk = models.CompositePrimaryKey("chunk", "lexeme")
    chunk = models.ForeignKey(Chunk, on_delete=models.CASCADE, related_name="+", db_index=False)
    lexeme = models.TextField(db_collation="C")
    # The chunk's own rows cascade these away; no second cascade path (and index) via the document.
    document = models.ForeignKey(Document, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False,
                                 related_name="+")
    tf = models.FloatField(help_text="Occurrences; a title/heading occurrence counts TITLE_TF_WEIGHT")
    length = models.PositiveIntegerField(help_text="The chunk's token count")

    class Meta:
        indexes = [
            # Covering: ranking reads lexeme → (chunk, document, tf, length) from the index alone.
            models.Index(fields=["lexeme"], include=["chunk", "document", "tf", "length"], name="posting_lexeme_cover"),
        ]

    def __str__(self) -> str:
        return f"{self.lexeme}@{self.chunk_id}"
