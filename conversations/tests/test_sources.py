"""The source view: a cited passage in its document, only for ready help-centre documents, escaped."""
from __future__ import annotations

import pytest
from knowledge.models import Chunk, Document  # test-only: builds the knowledge base the view reads

pytestmark = pytest.mark.django_db


def chunk(*, status: str = "ready", collection: str = "default", text: str = "Refunds take 5 days.") -> Chunk:
    document = Document.objects.create(title="Refunds <b>policy</b>", content_hash=f"{status}{collection}{text}"[:64],
                                       status=status, collection=collection)
    return Chunk.objects.create(document=document, ordinal=0, text=text, heading_path="Refunds › Timing",
                                embedding=[0.0] * 384)


def test_it_shows_the_title_heading_and_highlights_the_cited_passage(client):
    cited = chunk(text="Refunds take <script>alert(1)</script> 5 days.")

    html = client.get(f"/sources/{cited.pk}/?n=1").content.decode()

    assert "Refunds &lt;b&gt;policy&lt;/b&gt;" in html and "Refunds › Timing" in html
    assert "<mark>Refunds take &lt;script&gt;alert(1)&lt;/script&gt; 5 days.</mark>" in html


@pytest.mark.parametrize("status, collection", [("processing", "default"), ("ready", "internal")])
def test_documents_not_ready_or_outside_the_help_centre_are_not_shown(client, status, collection):
    hidden = chunk(status=status, collection=collection)

    assert client.get(f"/sources/{hidden.pk}/").status_code == 404
