"""Writes on escalations: open, take over, reply, note, resolve, return to the bot, re-prioritise, sweep.

`check_*` functions validate and authorise; the public services call them inside
the transaction (on a locked row) and then mutate. Chat events and metrics go out
on commit. The chat is reached through `escalation.session` and its related
managers: escalations never imports conversations.
"""
from __future__ import annotations

import logging
import math
import re
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from escalations import metrics
from escalations.hours import describe_opening
from escalations.models import Escalation, EscalationEvent, InternalNote
from escalations.selectors import LIVE, business_hours, display_name, queue_ahead, queue_counts
from escalations.summary import session_summary
from supportdesk.events import publish_on_commit

log = logging.getLogger(__name__)
PRIORITY_BY_NAME = {"low": Escalation.Priority.LOW, "normal": Escalation.Priority.NORMAL,
                    "high": Escalation.Priority.HIGH, "urgent": Escalation.Priority.URGENT}
MAX_REPLY_CHARS = 4000
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}\b", re.I)


class EscalationError(Exception):
    """An action that cannot be done in the escalation's current state; the message is for staff."""


def sla_due(priority: int, now: datetime | None = None) -> datetime:
    minutes = settings.ESCALATION_SLA_MINUTES[Escalation.Priority(priority).name.lower()]
    return (now or timezone.now()) + timedelta(minutes=minutes)


def _record(escalation: Escalation, actor: Any, action: str, detail: str = "") -> None:
    EscalationEvent.objects.create(escalation=escalation, actor=actor, action=action, detail=detail[:500])


def _post(escalation: Escalation, content: str, **fields: Any) -> Any:
    """A message in the user's chat, announced to the chat consumer on commit."""
    message = escalation.session.messages.create(content=content, **{"role": "system", **fields})
    publish_on_commit(escalation.session, "message", message.pk)
    return message


def _set_state(escalation: Escalation, state: str) -> None:
    session = escalation.session
    session.state = state
    session.save(update_fields=["state"])
    publish_on_commit(session, "state", None)


def _locked(escalation: Escalation) -> Escalation:
    return Escalation.objects.select_for_update(of=("self",)).select_related("session", "assignee").get(pk=escalation.pk)


# --------------------------------------------------------------------------- open


def escalation_open(*, session_id: int, reason: str, detail: str = "", priority: str = "",
                    now: datetime | None = None) -> Escalation:
    """Open an escalation for a chat, or return the one already open (at most one per chat).

    Records the priority, the SLA due time and a summary, tells the user what happens
    next (queue position and wait, or when the team is back), and on commit counts it
    and fires the webhook.
    """
    existing = Escalation.objects.filter(session_id=session_id, status__in=LIVE).first()
    if existing:
        return existing
    now = now or timezone.now()
    level = PRIORITY_BY_NAME.get(priority or "normal", Escalation.Priority.NORMAL)
    session = Escalation._meta.get_field("session").related_model.objects.get(pk=session_id)
    label = dict(Escalation.Reason.choices).get(reason, reason)
    try:
        with transaction.atomic():
            escalation = Escalation.objects.create(
                session=session, reason=reason, detail=detail[:2000], priority=level, created_at=now,
                sla_due_at=sla_due(level, now),
                summary=session_summary(session, label, detail, settings.ESCALATION_LOW_CONFIDENCE))
            _record(escalation, None, "opened", f"{reason}: {detail}")
            _post(escalation, escalation_notice(escalation=escalation, now=now))
    except IntegrityError:  # opened concurrently by another process
        return Escalation.objects.get(session_id=session_id, status__in=LIVE)
    transaction.on_commit(lambda: _announce(escalation))
    return escalation


def _announce(escalation: Escalation) -> None:
    metrics.OPENED.labels(escalation.reason, escalation.get_priority_display().lower()).inc()
    if settings.ESCALATION_WEBHOOK_URL:
        from escalations.tasks import send_webhook

        try:
            send_webhook.delay(escalation.pk)
        except Exception:  # a broker outage must not break the chat; the sweep is not a retry path
            log.exception("could not enqueue the escalation webhook", extra={"escalation": escalation.pk})


def _wait_text(minutes: int) -> str:
    if minutes < 60:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours, rest = divmod(minutes, 60)
    return f"{hours} hour{'s' if hours != 1 else ''}" + (f" {rest} minutes" if rest else "")


def escalation_notice(*, escalation: Escalation, now: datetime | None = None) -> str:
    """What the user reads when the chat is handed over: queue position and wait, or when someone answers."""
    now = now or timezone.now()
    hours = business_hours()
    if hours.is_open(now):
        position = queue_ahead(escalation=escalation) + 1
        wait = math.ceil(position * settings.ESCALATION_AVG_HANDLE_MIN)
        return (f"A person from our support team will join this chat. You are number {position} in the queue; "
                f"the expected wait is about {_wait_text(wait)}.")
    opening = hours.next_opening(now)
    when = describe_opening(opening, now, hours.tz) if opening else "as soon as the team is back"
    email = escalation.session.end_user_email
    follow_up = (f"We will also reply by email to {email}." if email else
                 "Please type your email address here so we can reply even if you have left the chat.")
    return (f"Our support team is not available right now. Someone will answer {when} ({hours.tz} time). "
            f"{follow_up}")


# --------------------------------------------------------------------------- take over


def check_escalation_takeover(*, escalation: Escalation, actor: Any, assignee: Any) -> None:
    """Raise unless `actor` may give `escalation` to `assignee` now."""
    if not actor.has_perm("escalations.change_escalation"):
        raise PermissionDenied("You cannot work on escalations.")
    if not escalation.is_open():
        raise EscalationError("This escalation is already closed.")
    current = escalation.assignee_id
    if current and current not in (assignee.pk, actor.pk) and not actor.has_perm("escalations.reassign_escalation"):
        raise PermissionDenied(f"{display_name(escalation.assignee)} is handling this conversation; "
                               "taking it over needs the “reassign escalation” permission.")
    if not (assignee.is_active and assignee.is_staff and assignee.has_perm("escalations.change_escalation")):
        raise EscalationError(f"{display_name(assignee)} cannot work on escalations.")


def _take_over(escalation: Escalation, *, assignee: Any, actor: Any) -> None:
    check_escalation_takeover(escalation=escalation, actor=actor, assignee=assignee)
    if escalation.assignee_id == assignee.pk and escalation.status == Escalation.Status.ASSIGNED:
        return
    previous = escalation.assignee
    escalation.assignee, escalation.status = assignee, Escalation.Status.ASSIGNED
    escalation.save(update_fields=["assignee", "status"])
    _set_state(escalation, "human")
    _interrupt_streaming(escalation)
    _post(escalation, f"{display_name(assignee)} from support has joined the chat.")
    taken = f" (taken over from {display_name(previous)})" if previous and previous != assignee else ""
    _record(escalation, actor, "assigned", f"to {display_name(assignee)}{taken}")


def _interrupt_streaming(escalation: Escalation) -> None:
    """Stop the bot's half-written reply in the database too (the consumer may not be connected)."""
    streaming = escalation.session.messages.filter(role="assistant", status="streaming")
    ids = list(streaming.values_list("pk", flat=True))
    streaming.update(status="interrupted")
    for pk in ids:
        publish_on_commit(escalation.session, "message", pk)


def escalation_assign(*, escalation: Escalation, assignee: Any, actor: Any) -> Escalation:
    """Give the chat to `assignee` (often the actor): the bot goes silent and the user is told who joined."""
    with transaction.atomic():
        escalation = _locked(escalation)
        _take_over(escalation, assignee=assignee, actor=actor)
    return escalation


# --------------------------------------------------------------------------- reply and notes


def check_escalation_reply(*, escalation: Escalation, author: Any, text: str) -> str:
    if not author.has_perm("escalations.reply_escalation"):
        raise PermissionDenied("You cannot reply to users.")
    if not escalation.is_open():
        raise EscalationError("This escalation is closed; the user can no longer be answered here.")
    text = (text or "").strip()
    if not text:
        raise EscalationError("Type a reply first.")
    if len(text) > MAX_REPLY_CHARS:
        raise EscalationError(f"Replies can be at most {MAX_REPLY_CHARS} characters.")
    return text


def escalation_reply(*, escalation: Escalation, author: Any, text: str, now: datetime | None = None) -> Any:
    """Send a staff reply into the user's chat, under the staff member's name; replying takes the chat over."""
    now = now or timezone.now()
    with transaction.atomic():
        escalation = _locked(escalation)
        text = check_escalation_reply(escalation=escalation, author=author, text=text)
        _take_over(escalation, assignee=author, actor=author)
        message = _post(escalation, text, role="human", author=author, author_name=display_name(author),
                        created_at=now)
        _first_response(escalation, now)
        _record(escalation, author, "replied", text[:200])
    return message


def _first_response(escalation: Escalation, now: datetime) -> None:
    if escalation.first_response_at is not None:
        return
    escalation.first_response_at = now
    fields = ["first_response_at"]
    late = escalation.breached_at is None and now > escalation.sla_due_at
    if late:  # answered after the SLA but before the sweep noticed
        escalation.breached_at = now
        fields.append("breached_at")
    escalation.save(update_fields=fields)
    priority = escalation.get_priority_display().lower()
    seconds = (now - escalation.created_at).total_seconds()
    transaction.on_commit(lambda: metrics.FIRST_RESPONSE.labels(priority).observe(seconds))
    if late:
        transaction.on_commit(lambda: metrics.SLA_BREACHES.labels(priority).inc())


def escalation_note_add(*, escalation: Escalation, author: Any, body: str) -> InternalNote:
    """An internal note for colleagues; it never reaches the user's chat."""
    if not author.has_perm("escalations.change_escalation"):
        raise PermissionDenied("You cannot add notes to escalations.")
    body = (body or "").strip()
    if not body:
        raise EscalationError("Write a note first.")
    with transaction.atomic():
        note = InternalNote.objects.create(escalation=escalation, author=author, body=body[:10000])
        _record(escalation, author, "note", body[:200])
    return note


# --------------------------------------------------------------------------- close, return, priority


def check_escalation_change(*, escalation: Escalation, actor: Any) -> None:
    if not actor.has_perm("escalations.change_escalation"):
        raise PermissionDenied("You cannot change escalations.")
    if not escalation.is_open():
        raise EscalationError("This escalation is already closed.")
    if (escalation.assignee_id and escalation.assignee_id != actor.pk
            and not actor.has_perm("escalations.reassign_escalation")):
        raise PermissionDenied(f"{display_name(escalation.assignee)} is handling this conversation.")


def escalation_resolve(*, escalation: Escalation, actor: Any, now: datetime | None = None) -> Escalation:
    """Close the escalation; the chat goes back to the bot or is closed (ESCALATION_RESOLVE_STATE)."""
    state = settings.ESCALATION_RESOLVE_STATE
    ending = ("Our assistant is here again if you need anything else." if state == "bot" else
              "This chat is now closed; start a new one if you need anything else.")
    return _close(escalation, actor, Escalation.Status.RESOLVED, state,
                  f"{display_name(actor)} marked this conversation as resolved. {ending}", now)


def escalation_return(*, escalation: Escalation, actor: Any, now: datetime | None = None) -> Escalation:
    """Hand the chat back to the bot and tell the user."""
    return _close(escalation, actor, Escalation.Status.RETURNED, "bot",
                  "You are back with our virtual assistant. Ask for a person again at any time.", now)


def _close(escalation: Escalation, actor: Any, status: str, state: str, text: str, now: datetime | None) -> Escalation:
    with transaction.atomic():
        escalation = _locked(escalation)
        check_escalation_change(escalation=escalation, actor=actor)
        escalation.status, escalation.resolved_at = status, now or timezone.now()
        escalation.save(update_fields=["status", "resolved_at"])
        _set_state(escalation, state)
        _post(escalation, text)
        _record(escalation, actor, "resolved" if status == Escalation.Status.RESOLVED else "returned",
                f"chat is now {state}")
    return escalation


def escalation_set_priority(*, escalation: Escalation, actor: Any, priority: int) -> Escalation:
    """Change the priority; the SLA due time moves with it (counted from when the escalation opened)."""
    new = Escalation.Priority(int(priority))
    with transaction.atomic():
        escalation = _locked(escalation)
        check_escalation_change(escalation=escalation, actor=actor)
        old = escalation.get_priority_display()
        escalation.priority, escalation.sla_due_at = new, sla_due(new, escalation.created_at)
        escalation.save(update_fields=["priority", "sla_due_at"])
        _record(escalation, actor, "priority", f"{old} → {new.label}")
    return escalation


# --------------------------------------------------------------------------- periodic sweep


def escalation_sla_sweep(*, now: datetime | None = None) -> int:
    """Mark live escalations whose SLA passed without a human reply as breached, once each; returns how many."""
    now = now or timezone.now()
    due = Escalation.objects.filter(status__in=LIVE, first_response_at=None, breached_at=None, sla_due_at__lte=now)
    breached = 0
    for escalation in due:
        if Escalation.objects.filter(pk=escalation.pk, breached_at=None).update(breached_at=now):
            breached += 1
            _record(escalation, None, "sla_breached", f"due {escalation.sla_due_at:%Y-%m-%d %H:%M} UTC")
            metrics.SLA_BREACHES.labels(escalation.get_priority_display().lower()).inc()
    return breached


def escalation_email_capture(*, escalation: Escalation) -> str | None:
    """Store the first email address the user typed after the hand-over on the chat session."""
    session = escalation.session
    if session.end_user_email:
        return None
    texts = session.messages.filter(role="user", created_at__gte=escalation.created_at).values_list("content", flat=True)
    email = next((m.group(0) for text in texts if (m := EMAIL.search(text))), None)
    if email is None:
        return None
    with transaction.atomic():
        session.end_user_email = email[:254]
        session.save(update_fields=["end_user_email"])
        _post(escalation, f"Thanks, we will reply to {email} if you have left the chat by then.")
        _record(escalation, None, "email", email)
    return email


def escalations_sweep(*, now: datetime | None = None) -> int:
    """The beat job: count SLA breaches, pick up emails left out of hours, refresh the queue gauge."""
    breached = escalation_sla_sweep(now=now)
    waiting = Escalation.objects.filter(status__in=LIVE, session__end_user_email="").select_related("session")
    for escalation in waiting:
        escalation_email_capture(escalation=escalation)
    for status, count in queue_counts().items():
        metrics.QUEUE_SIZE.labels(status).set(count)
    return breached


__all__ = ["EscalationError", "check_escalation_takeover", "escalation_assign", "escalation_email_capture",
           "escalation_note_add", "escalation_notice", "escalation_open", "escalation_reply", "escalation_resolve",
           "escalation_return", "escalation_set_priority", "escalation_sla_sweep", "escalations_sweep"]
