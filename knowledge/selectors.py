"""Reads on the knowledge base that other apps reuse."""
from __future__ import annotations

from knowledge.models import DEFAULT_COLLECTION, Chunk, Document


def chunk_neighbours(*, chunk_id: int, context: int = 1) -> tuple[Chunk, list[Chunk]] | None:
    """A chunk of a ready document in the help centre, and the chunks around it."""
    chunk = (Chunk.objects.select_related("document")
             .filter(pk=chunk_id, document__status=Document.Status.READY, document__collection=DEFAULT_COLLECTION)
             .first())
    if chunk is None:
        return None
    nearby = Chunk.objects.filter(document=chunk.document, ordinal__gte=chunk.ordinal - context,
                                  ordinal__lte=chunk.ordinal + context).order_by("ordinal")
    return chunk, list(nearby)
