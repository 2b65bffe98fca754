"""The chat page and its plain-HTTP actions (they all work without JavaScript).

The session token lives only in an HttpOnly cookie; the database keeps its hash.
"""
from __future__ import annotations

import uuid

from asgiref.sync import async_to_sync
from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from conversations import ratelimit, selectors, services
from conversations.forms import FeedbackForm, UploadForm, message_form
from conversations.models import ChatSession, Message
from conversations.rendering import present
from conversations.runner import respond

COOKIE = "sd_chat"
# The cookie outlives the session so an expired chat can say so instead of silently restarting.
COOKIE_MAX_AGE = 30 * 86400
CHAT = "conversations/chat.html"


def _set_cookie(response: HttpResponse, token: str) -> HttpResponse:
    response.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE, httponly=True, samesite="Lax",
                        secure=settings.HTTPS)
    return response


def current_session(request: HttpRequest) -> ChatSession:
    """The cookie's session or SessionError (missing, invalid, expired)."""
    return services.session_authenticate(token=request.COOKIES.get(COOKIE))


def _new_session(request: HttpRequest) -> tuple[str | None, str]:
    """(token, "") for a new session, or (None, why not) when rate limited."""
    limited = ratelimit.hit_http(request, "sessions", values=[ratelimit.ip_key(ratelimit.client_ip(request))])
    if limited:
        return None, limited.message
    return services.session_create().token, ""


def _page(request: HttpRequest, session: ChatSession | None, *, status: int = 200, **extra: object) -> HttpResponse:
    context = selectors.chat_context(session=session) if session else {"messages": []}
    present(context["messages"])
    context |= {"client_message_id": uuid.uuid4().hex, "attachment_types": settings.ATTACHMENT_TYPES,
                "attachment_max_mb": settings.ATTACHMENT_MAX_MB, **extra}
    template = CHAT + ("#conversation" if request.htmx else "")
    return render(request, template, context, status=status)


@require_GET
def chat_page(request: HttpRequest) -> HttpResponse:
    """Open or resume the chat; a bad or expired cookie is explained, never a bare error."""
    try:
        return _page(request, current_session(request))
    except services.SessionError as error:
        if error.code != "missing":
            return _page(request, None, problem=error.message)
    token, refused = _new_session(request)
    if token is None:
        return _page(request, None, status=429, problem=refused)
    session = services.session_authenticate(token=token)
    return _set_cookie(_page(request, session), token)


@require_POST
def chat_new(request: HttpRequest) -> HttpResponse:
    """'Start a new chat': a fresh session and cookie."""
    token, refused = _new_session(request)
    if token is None:
        return _page(request, None, status=429, problem=refused)
    return _set_cookie(redirect("chat"), token)


@require_POST
def message_send(request: HttpRequest) -> HttpResponse:
    """The no-socket path: save the message, answer it, redirect (POST/redirect/GET)."""
    try:
        session = current_session(request)
    except services.SessionError as error:
        return _page(request, None, status=403, problem=error.message)
    form = message_form(request.POST)
    try:
        message, answer = _accept_message(request, session, form)
    except services.MessageRejected as error:
        status = 429 if error.code == "rate_limited" else 400
        return _page(request, session, status=status, notice=error.message, draft=request.POST.get("content", ""))
    if answer:
        async_to_sync(drain_reply)(session.pk, message.pk, getattr(request, "request_id", ""))
    return redirect(reverse("chat") + f"#m-{message.pk}")


def _accept_message(request: HttpRequest, session: ChatSession, form: object) -> tuple[Message, bool]:
    if not form.is_valid():  # type: ignore[attr-defined]
        raise services.MessageRejected("invalid", form.first_error())  # type: ignore[attr-defined]
    values = [ratelimit.session_key(session.public_id), ratelimit.ip_key(ratelimit.client_ip(request))]
    limited = ratelimit.hit_http(request, "messages", values=values)
    if limited:
        raise services.MessageRejected("rate_limited", limited.message)
    ids = list(form.cleaned_data["attachment_ids"])  # type: ignore[attr-defined]
    upload = request.FILES.get("file")
    if upload:
        ids.append(_store_upload(request, session, upload).pk)
    message, created = services.message_create(session=session, content=form.cleaned_data["content"],  # type: ignore[attr-defined]
                                         client_message_id=form.cleaned_data["client_message_id"],  # type: ignore[attr-defined]
                                         attachment_ids=tuple(ids))
    return message, services.message_needs_reply(message=message, created=created)


async def drain_reply(session_id: int, message_id: int, request_id: str) -> None:
    async for _event in respond(session_id=session_id, message_id=message_id, request_id=request_id):
        pass


def _store_upload(request: HttpRequest, session: ChatSession, upload: object) -> object:
    values = [ratelimit.session_key(session.public_id), ratelimit.ip_key(ratelimit.client_ip(request))]
    limited = ratelimit.hit_http(request, "uploads", values=values)
    if limited:
        raise services.MessageRejected("rate_limited", limited.message)
    services.check_attachment(name=upload.name, size=upload.size)  # type: ignore[attr-defined]
    return services.attachment_create(session=session, name=upload.name, data=upload.read())  # type: ignore[attr-defined]


@require_POST
def attachment_upload(request: HttpRequest) -> HttpResponse:
    """An upload from the file picker or drag and drop (XHR); answers with its chip."""
    try:
        session = current_session(request)
        form = UploadForm(files=request.FILES)
        if not form.is_valid():
            raise services.MessageRejected("no_file", "Choose a file to upload.")
        attachment = _store_upload(request, session, form.cleaned_data["file"])
    except (services.SessionError, services.MessageRejected) as error:
        status = 429 if getattr(error, "code", "") == "rate_limited" else 400
        return render(request, "conversations/_attachment.html", {"error": error.message}, status=status)
    return render(request, "conversations/_attachment.html", {"a": attachment})


@require_GET
def attachment_file(request: HttpRequest, attachment_id: int) -> FileResponse:
    """An attachment, only to its own session; images inline, anything else as a download."""
    try:
        session = current_session(request)
    except services.SessionError as error:
        raise Http404(error.message) from error
    attachment = selectors.attachment_of_session(session=session, attachment_id=attachment_id)
    if attachment is None or not attachment.file:
        raise Http404("No such attachment")
    inline = attachment.content_type.startswith("image/")
    response = FileResponse(attachment.file.open("rb"), as_attachment=not inline, filename=attachment.original_name,
                            content_type=attachment.content_type if inline else "application/octet-stream")
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@require_POST
def message_feedback(request: HttpRequest, message_id: int) -> HttpResponse:
    """Thumbs up/down with an optional comment; htmx gets the updated feedback block."""
    try:
        session = current_session(request)
        form = FeedbackForm(request.POST)
        if not form.is_valid():
            raise services.MessageRejected("bad_feedback", "Choose 👍 or 👎.")
        message = services.feedback_set(session=session, message_id=message_id, value=form.cleaned_data["value"],
                                        comment=form.cleaned_data["comment"])
    except (services.SessionError, services.MessageRejected) as error:
        return HttpResponse(error.message, status=400, content_type="text/plain")
    if request.htmx:
        present([message])
        return render(request, "conversations/_message.html#feedback", {"m": message})
    return redirect(reverse("chat") + f"#m-{message.pk}")


@require_POST
def session_handover(request: HttpRequest) -> HttpResponse:
    """'Talk to a human': open an escalation; the bot stops answering."""
    try:
        session = current_session(request)
    except services.SessionError as error:
        return _page(request, None, status=403, problem=error.message)
    services.session_escalate(session=session, reason="user_request", detail="Asked for a person in the chat")
    if request.htmx:
        return render(request, CHAT + "#banner", selectors.banner_context(session_id=session.pk))
    return redirect("chat")


@require_GET
def source_detail(request: HttpRequest, chunk_id: int) -> HttpResponse:
    """A cited passage in its document, highlighted; only ready help-centre documents."""
    source = selectors.source_passage(chunk_id=chunk_id)
    if source is None:
        raise Http404("No such source")
    n = request.GET.get("n", "")
    return render(request, "conversations/source.html", {"source": source, "n": n if n.isdigit() else ""})
