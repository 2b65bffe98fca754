"""JSON API for integrations: sessions, history, messages (plain JSON or Server-Sent Events).

Auth is `Authorization: Bearer <session token>` (so no CSRF); every error is
{"error": {"code", "message"}} with a 4xx status.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from functools import wraps

from asgiref.sync import async_to_sync, sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from conversations import ratelimit, selectors, services
from conversations.forms import message_form
from conversations.hub import hub
from conversations.models import ChatSession, Message
from conversations.views import drain_reply

MAX_BODY_BYTES = 64 * 1024
AUTH_STATUS = {"missing": 401, "invalid": 401, "expired": 403, "closed": 403}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def api_view(methods: tuple[str, ...]) -> Callable:
    """CSRF-exempt (bearer auth), method-checked, and every ApiError as JSON."""
    def decorate(view: Callable) -> Callable:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            if request.method not in methods:
                return error_response(405, "method_not_allowed", f"Use {' or '.join(methods)}.")
            try:
                return view(request, *args, **kwargs)
            except ApiError as error:
                return error_response(error.status, error.code, error.message)
        return wrapper
    return decorate


def json_body(request: HttpRequest) -> dict:
    if int(request.META.get("CONTENT_LENGTH") or 0) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"The body can be at most {MAX_BODY_BYTES // 1024} KB.")
    raw = request.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"The body can be at most {MAX_BODY_BYTES // 1024} KB.")
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, "malformed_json", "The body is not valid JSON.") from error
    if not isinstance(body, dict):
        raise ApiError(400, "malformed_json", "The body must be a JSON object.")
    return body


def strings(body: dict, *names: str) -> dict[str, str]:
    values = {name: body.get(name, "") for name in names}
    wrong = [name for name, value in values.items() if not isinstance(value, str)]
    if wrong:
        raise ApiError(400, "wrong_type", f"{wrong[0]} must be a string.")
    return values  # type: ignore[return-value]


def authorised_session(request: HttpRequest, session_id: str) -> ChatSession:
    """The session named in the URL, if the bearer token opens exactly that one."""
    try:
        public_id = uuid.UUID(session_id)
    except ValueError as error:
        raise ApiError(404, "not_found", "No such session.") from error
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    try:
        session = services.session_authenticate(token=token.strip() if scheme.lower() == "bearer" else None)
    except services.SessionError as error:
        raise ApiError(AUTH_STATUS.get(error.code, 401), error.code, error.message) from error
    if session.public_id != public_id:
        exists = ChatSession.objects.filter(public_id=public_id).exists()
        raise ApiError(403 if exists else 404, "forbidden" if exists else "not_found",
                       "This token does not open that session." if exists else "No such session.")
    return session


def limit(request: HttpRequest, kind: str, values: list[str]) -> None:
    limited = ratelimit.hit_http(request, kind, values=values, channel="api")
    if limited:
        raise ApiError(429, "rate_limited", limited.message)


def source_json(source: dict) -> dict:
    return {"document": source.get("document_id"), "title": source.get("title", ""),
            "heading": source.get("heading", ""), "chunk_id": source.get("chunk_id")}


def message_json(message: Message) -> dict:
    return {"id": message.pk, "role": message.role, "content": message.content, "status": message.status,
            "author_name": message.author_name, "client_message_id": message.client_message_id,
            "created_at": message.created_at.isoformat(), "sources": [source_json(s) for s in message.sources]}


def escalation_json(session: ChatSession) -> dict | None:
    escalation = session.escalations.filter(status__in=["open", "assigned"]).order_by("-id").first()
    if escalation is None:
        return None
    return {"reason": escalation.reason, "priority": escalation.get_priority_display().lower()}


def exchange_json(message: Message) -> dict:
    """The user message, its reply (None while a human owns the chat) and any escalation."""
    reply = message.replies.filter(role=Message.Role.ASSISTANT).order_by("id").first()
    reply_data = None
    if reply is not None:
        reply_data = {"id": reply.pk, "content": reply.content, "status": reply.status,
                      "sources": [source_json(s) for s in reply.sources]}
    return {"message": message_json(message), "reply": reply_data,
            "escalation": escalation_json(ChatSession.objects.get(pk=message.session_id))}


@api_view(("POST",))
def sessions_create(request: HttpRequest) -> HttpResponse:
    """POST /api/sessions → 201 {"session_id", "token", "expires_at"}."""
    fields = strings(json_body(request), "end_user_id", "email", "name")
    limit(request, "sessions", [ratelimit.ip_key(ratelimit.client_ip(request))])
    new = services.session_create(end_user_id=fields["end_user_id"], email=fields["email"], name=fields["name"])
    return JsonResponse({"session_id": str(new.session.public_id), "token": new.token,
                         "expires_at": new.session.expires_at.isoformat()}, status=201)


@api_view(("GET", "POST"))
def session_messages(request: HttpRequest, session_id: str) -> HttpResponse:
    """GET: the history; POST {"content", "client_message_id"}: send and get the reply."""
    session = authorised_session(request, session_id)
    if request.method == "GET":
        after = request.GET.get("after", "0")
        rows = selectors.messages_after(session=session, after=int(after) if after.isdigit() else 0)
        return JsonResponse({"messages": [message_json(m) for m in rows]})
    message, answer = accept(request, session)
    if "text/event-stream" in request.headers.get("Accept", ""):
        response = StreamingHttpResponse(sse_events(session.pk, message.pk, answer), content_type="text/event-stream")
        response["Cache-Control"], response["X-Accel-Buffering"] = "no-cache", "no"
        return response
    if answer:
        async_to_sync(drain_reply)(session.pk, message.pk, getattr(request, "request_id", ""))
    return JsonResponse(exchange_json(message), status=200)


def accept(request: HttpRequest, session: ChatSession) -> tuple[Message, bool]:
    body = json_body(request)
    strings(body, "content", "client_message_id")
    form = message_form(body)
    if not form.is_valid():
        raise ApiError(400, "invalid", form.first_error())
    limit(request, "messages", [ratelimit.session_key(session.public_id),
                                ratelimit.ip_key(ratelimit.client_ip(request))])
    try:
        message, created = services.message_create(session=session, content=form.cleaned_data["content"],
                                                   client_message_id=form.cleaned_data["client_message_id"])
    except services.MessageRejected as error:
        raise ApiError(409 if error.code == "closed" else 400, error.code, error.message) from error
    return message, services.message_needs_reply(message=message, created=created)


def sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def sse_events(session_id: int, message_id: int, answer: bool) -> AsyncIterator[str]:
    """token events while the reply streams, then `done` with the same JSON as the plain API.

    The reply runs in the session's hub task: a client that hangs up does not stop it.
    """
    if answer:
        async for event in hub.stream(session_id, message_id):
            if event.kind == "token":
                yield sse("token", {"text": event.text})
            elif event.kind == "restart":
                yield sse("restart", {})
    message = await sync_to_async(Message.objects.get)(pk=message_id)
    yield sse("done", await sync_to_async(exchange_json)(message))


@api_view(("GET",))
def openapi(request: HttpRequest) -> HttpResponse:
    return JsonResponse(SCHEMA)


def _error_ref() -> dict:
    return {"$ref": "#/components/schemas/Error"}


def _responses(ok: dict, *errors: int) -> dict:
    out = {code: {"description": text, "content": {"application/json": {"schema": schema}}}
           for code, (text, schema) in ok.items()}
    for status in errors:
        out[str(status)] = {"description": "Error", "content": {"application/json": {"schema": _error_ref()}}}
    return out


_SESSION_PARAM = {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
_SOURCE = {"type": "object", "properties": {"document": {"type": "integer"}, "title": {"type": "string"},
                                            "heading": {"type": "string"}, "chunk_id": {"type": "integer"}}}
_MESSAGE = {"type": "object", "properties": {
    "id": {"type": "integer"}, "role": {"type": "string", "enum": ["user", "assistant", "human", "system"]},
    "content": {"type": "string"}, "status": {"type": "string"}, "author_name": {"type": "string"},
    "client_message_id": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"},
    "sources": {"type": "array", "items": _SOURCE}}}
_EXCHANGE = {"type": "object", "properties": {
    "message": {"$ref": "#/components/schemas/Message"},
    "reply": {"nullable": True, "type": "object", "properties": {
        "id": {"type": "integer"}, "content": {"type": "string"}, "status": {"type": "string"},
        "sources": {"type": "array", "items": _SOURCE}}},
    "escalation": {"nullable": True, "type": "object", "properties": {
        "reason": {"type": "string"}, "priority": {"type": "string"}}}}}

SCHEMA = {
    "openapi": "3.0.3",
    "info": {"title": "Supportdesk chat API", "version": "1.0.0",
             "description": "Chat sessions for integrations. Authenticate with `Authorization: Bearer <token>` "
                            "from POST /api/sessions. Errors are {\"error\": {\"code\", \"message\"}}."},
    "components": {
        "securitySchemes": {"session": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}}}}},
            "Message": _MESSAGE, "Exchange": _EXCHANGE},
    },
    "paths": {
        "/api/sessions": {"post": {
            "summary": "Start a chat session",
            "requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object", "properties": {
                "end_user_id": {"type": "string"}, "email": {"type": "string"}, "name": {"type": "string"}}}}}},
            "responses": _responses({"201": ("Created", {"type": "object", "properties": {
                "session_id": {"type": "string", "format": "uuid"}, "token": {"type": "string"},
                "expires_at": {"type": "string", "format": "date-time"}}})}, 400, 413, 429)}},
        "/api/sessions/{session_id}/messages": {
            "parameters": [_SESSION_PARAM],
            "get": {"summary": "The conversation so far", "security": [{"session": []}],
                    "parameters": [{"name": "after", "in": "query", "schema": {"type": "integer"}}],
                    "responses": _responses({"200": ("History", {"type": "object", "properties": {
                        "messages": {"type": "array", "items": {"$ref": "#/components/schemas/Message"}}}})},
                        401, 403, 404)},
            "post": {"summary": "Send a message and get the reply",
                     "description": "With `Accept: text/event-stream` the reply streams as Server-Sent Events: "
                                    "`token` events ({\"text\"}), maybe `restart`, then one `done` event whose "
                                    "data is the Exchange JSON. Resending a client_message_id is idempotent.",
                     "security": [{"session": []}],
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "object", "required": ["content"], "properties": {
                             "content": {"type": "string", "maxLength": 4000},
                             "client_message_id": {"type": "string", "maxLength": 64}}}}}},
                     "responses": _responses({"200": ("The exchange", {"$ref": "#/components/schemas/Exchange"})},
                                             400, 401, 403, 404, 409, 413, 429)},
        },
        "/api/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}},
    },
}
