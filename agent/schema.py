"""Typed values that flow through the agent; no Django, no I/O."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class HistoryItem:
    role: str  # "user" | "assistant" | "human" | "system"
    content: str
    confidence: float | None = None  # retrieval confidence of an assistant reply
    message_id: int | None = None  # lets the summary record how far it has folded


@dataclass(frozen=True)
class MemoryItem:
    kind: str  # "summary" | "fact"
    key: str
    content: str
    # Summary only: the id of the last message folded into it (the watermark for the next update).
    folded_until: int | None = None


@dataclass(frozen=True)
class AttachmentItem:
    name: str
    content_type: str
    text: str
    status: str  # "ready" | "failed" | "pending"
    url: str = ""
    attachment_id: int | None = None
    size: int = 0
    # An image's bytes, filled only when a vision model is shown it (agent.attachments.load_images).
    data: bytes = field(default=b"", repr=False)


class ConversationStore(Protocol):
    """What the agent may read and write of a conversation.

    Implemented by the conversations app and passed in, so the agent never
    imports conversation models (imports flow conversations → agent).
    """

    def turns(self, limit: int, after_id: int | None = None) -> tuple[list[HistoryItem], list[HistoryItem]]: ...
    def memories(self) -> list[MemoryItem]: ...
    def attachments(self) -> list[AttachmentItem]: ...
    def attachment_bytes(self, attachment_id: int) -> bytes: ...
    def save_memories(self, *, facts: dict[str, str], summary: str | None, ttl_s: int,
                      folded_until: int | None = None) -> None: ...


@dataclass
class AgentContext:
    """One user message and everything the pipeline learns about it."""

    session_id: int
    session_public_id: str
    message_id: int
    text: str
    store: ConversationStore
    request_id: str = ""
    # The email the session was started with (ChatSession.end_user_email, from the API), if any.
    customer_email: str = ""
    run_id: int | None = None
    # Filled by the pipeline's steps:
    redacted_text: str = ""
    # The confidential part of the system prompt, with the persona staff set (agent.prompts).
    instructions: str = ""
    history: list[HistoryItem] = field(default_factory=list)
    # Older than the verbatim window but not yet in the summary: the prompt carries them verbatim.
    unfolded_history: list[HistoryItem] = field(default_factory=list)
    memories: list[MemoryItem] = field(default_factory=list)
    attachments: list[AttachmentItem] = field(default_factory=list)
    # Why an image was not shown to a vision model; said next to the customer's message.
    image_notes: list[str] = field(default_factory=list)
    search: Any = None  # knowledge.retrieval.SearchResponse
    flags: dict[str, Any] = field(default_factory=dict)
    # Work a tool's warm() started for its own step, by tool name (e.g. a search's Future).
    ahead: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolResult:
    ok: bool
    data: Any = None
    summary: str = ""
    error: str = ""


@dataclass
class ToolCallRecord:
    tool: str
    arguments: dict
    status: str  # "ok" | "error" | "pending_approval"
    result_summary: str
    duration_ms: float
    error: str = ""
    approval_required: bool = False


@dataclass(frozen=True)
class Source:
    n: int
    chunk_id: int
    document_id: int
    title: str
    heading: str
    location: str = ""

    def as_dict(self) -> dict:
        return {"n": self.n, "chunk_id": self.chunk_id, "document_id": self.document_id,
                "title": self.title, "heading": self.heading, "location": self.location}


@dataclass
class AgentResponse:
    text: str
    sources: list[Source]
    confidence: float
    mode: str  # "llm" | "grounded"
    model: str = ""
    escalated: bool = False
    escalation_reason: str = ""
    escalation_detail: str = ""
    escalation_priority: str = ""
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    flags: dict[str, Any] = field(default_factory=dict)
    run_id: int | None = None


@dataclass(frozen=True)
class Token:
    """A piece of reply text, streamed in order."""

    text: str


@dataclass(frozen=True)
class Restart:
    """Discard the text streamed so far: a fallback model starts the reply over."""

    reason: str


@dataclass(frozen=True)
class Final:
    response: AgentResponse


AgentEvent = Token | Restart | Final
