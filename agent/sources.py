"""What the chat shows of a cited source (conversations reach knowledge through the agent)."""
from __future__ import annotations

from dataclasses import dataclass

from knowledge.selectors import chunk_neighbours


@dataclass(frozen=True)
class Passage:
    chunk_id: int
    text: str
    heading: str
    location: str
    cited: bool


@dataclass(frozen=True)
class SourceView:
    title: str
    heading: str
    passages: list[Passage]


def cited_passage(*, chunk_id: int, context: int = 1) -> SourceView | None:
    """A cited chunk with its neighbours; None unless it is a ready help-centre document."""
    found = chunk_neighbours(chunk_id=chunk_id, context=context)
    if found is None:
        return None
    chunk, nearby = found
    passages = [Passage(c.pk, c.text, c.heading_path, c.location, c.pk == chunk.pk) for c in nearby]
    return SourceView(title=chunk.document.title, heading=chunk.heading_path, passages=passages)
