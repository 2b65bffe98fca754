"""Safe HTML for chat messages, and the small fragments the socket sends.

Replies are Markdown written by an LLM (or extracted from documents); user text is
never Markdown. Everything goes through markdown-it with raw HTML off and then nh3
with a small allow-list, so no HTML from a user, a document or a model can run.
"""
from __future__ import annotations

import re
from functools import lru_cache

import nh3
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

from conversations.models import Message

ALLOWED_TAGS = {"p", "br", "strong", "em", "code", "pre", "ul", "ol", "li", "a", "blockquote",
                "h3", "h4", "h5", "hr", "table", "thead", "tbody", "tr", "th", "td", "del"}
URL_SCHEMES = {"http", "https", "mailto"}
# "[2]" after a sentence cites the reply's second source.
_CITATION = re.compile(r"\[(\d{1,2})\](?![^<]*</a>)")


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "breaks": True}).enable("table").enable("strikethrough")


def markdown_html(text: str) -> str:
    """Markdown → sanitised HTML; links open in a new tab without an opener."""
    html = _markdown().render(text or "")
    return nh3.clean(html, tags=ALLOWED_TAGS, attributes={"a": {"href", "title"}}, url_schemes=URL_SCHEMES,
                     link_rel="noopener noreferrer", set_tag_attribute_values={"a": {"target": "_blank"}})


def source_url(source: dict) -> str:
    return reverse("source", args=[int(source.get("chunk_id") or 0)]) + f"?n={int(source.get('n') or 0)}"


def _link_citations(html: str, sources: list[dict]) -> str:
    by_number = {int(s.get("n") or 0): s for s in sources if isinstance(s, dict)}

    def link(match: re.Match[str]) -> str:
        source = by_number.get(int(match.group(1)))
        if source is None:
            return match.group(0)
        return str(format_html('<a class="cite" href="{}" target="_blank" rel="noopener noreferrer">[{}]</a>',
                               source_url(source), match.group(1)))

    return _CITATION.sub(link, html)


def reply_html(message: Message) -> SafeString:
    """The body of an assistant or human message, as safe HTML."""
    html = markdown_html(message.content)
    if message.sources:
        html = _link_citations(html, message.sources)
    return mark_safe(html)  # noqa: S308 - sanitised by nh3 above


def user_html(text: str) -> SafeString:
    return escape(text)


# --- socket fragments -----------------------------------------------------------


def message_fragment(message: Message, *, append: bool, streamed_text: str | None = None) -> str:
    """A message for htmx's out-of-band swap: appended to the list, or replacing itself by id."""
    present([message])
    context = {"m": message, "append": append, "streamed_text": streamed_text}
    return render_to_string("conversations/_socket_message.html", context)


def tokens_fragment(reply_id: int, text: str) -> str:
    return f'<span hx-swap-oob="beforeend:#m-{int(reply_id)}-text">{escape(text)}</span>'


def restart_fragment(reply_id: int) -> str:
    return f'<span id="m-{int(reply_id)}-text" class="streamed" hx-swap-oob="true"></span>'


def notice_fragment(text: str, *, kind: str = "error") -> str:
    """The line above the input: an error (rate limit, validation) or cleared with ''."""
    return render_to_string("conversations/_socket_notice.html", {"text": text, "kind": kind})


def banner_fragment(context: dict) -> str:
    return render_to_string("conversations/chat.html#banner", {**context, "oob": True})


def announce_fragment(message: Message) -> str:
    """The hidden live region screen readers read out when a message arrives."""
    who = {"user": "You", "assistant": "Assistant", "human": message.author_name or "Support",
           "system": "Notice"}.get(message.role, "")
    text = nh3.clean(markdown_html(message.content), tags=set())[:600]
    return f'<div id="announcer" class="visually-hidden" aria-live="polite" hx-swap-oob="true">{escape(who)}: {text}</div>'


WHO = {"user": "You", "assistant": "Assistant", "system": ""}


def present(messages: list[Message]) -> list[Message]:
    """Attach what templates show: who spoke and the safe body HTML."""
    for message in messages:
        message.who = message.author_name or "Support" if message.role == "human" else WHO.get(message.role, "")  # type: ignore[attr-defined]
        if message.role in ("user", "system"):
            message.body_html = user_html(message.content)  # type: ignore[attr-defined]
        else:
            message.body_html = reply_html(message)  # type: ignore[attr-defined]
        message.source_links = [(source_url(s), s) for s in message.sources if isinstance(s, dict)]  # type: ignore[attr-defined]
    return messages
