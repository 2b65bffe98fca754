"""No HTML from a user, a document or a model ever runs in the chat."""
from __future__ import annotations

from html.parser import HTMLParser

import pytest

from conversations.models import Message
from conversations.rendering import markdown_html, message_fragment, reply_html

ATTACKS = ['<img src=x onerror=alert(1)>', '<script>alert(1)</script>', '[click](javascript:alert(1))',
           '<a href="javascript:alert(1)">x</a>', '<iframe src="https://evil.example"></iframe>']


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.found.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict]]:
    parser = Elements()
    parser.feed(html)
    return parser.found


@pytest.mark.parametrize("attack", ATTACKS)
def test_markdown_from_a_model_cannot_carry_markup_that_runs(attack):
    found = elements(markdown_html(f"Hello {attack} there"))

    assert not [tag for tag, _ in found if tag in ("img", "script", "iframe")]
    assert not [a for _, attrs in found for a in attrs if a.startswith("on")]
    assert not [attrs for _, attrs in found if (attrs.get("href") or "").lower().startswith("javascript")]


def test_links_open_in_a_new_tab_without_an_opener():
    html = markdown_html("See [returns](https://shop.example/returns).")

    assert 'href="https://shop.example/returns"' in html
    assert 'target="_blank"' in html and 'rel="noopener noreferrer"' in html


def test_citation_numbers_link_to_their_source():
    reply = Message(id=5, role="assistant", content="Free returns. [2]",
                    sources=[{"n": 2, "chunk_id": 11, "document_id": 1, "title": "Returns", "heading": ""}])

    assert '<a class="cite" href="/sources/11/?n=2"' in reply_html(reply)


@pytest.mark.django_db
def test_a_user_message_is_shown_as_escaped_text():
    message = Message(id=9, role="user", content='<img src=x onerror=alert(1)> [a](javascript:alert(1))',
                      status="complete")

    html = message_fragment(message, append=True)

    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img" not in html
