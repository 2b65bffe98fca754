"""The outgoing webhook: signed JSON to a real local receiver, retried on failure, sent once."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from escalations.models import Escalation
from escalations.services import escalation_open
from escalations.tasks import send_webhook
from escalations.tests.conftest import WEDNESDAY_10, make_chat
from escalations.webhooks import WebhookFailed, escalation_webhook_send, sign, verify

pytestmark = pytest.mark.django_db
SECRET = "s3cret-for-tests"


class Receiver:
    """A real HTTP server on 127.0.0.1 answering with scripted status codes (200 once the script runs out)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/escalations"


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    settings.ESCALATION_WEBHOOK_URL, settings.ESCALATION_WEBHOOK_SECRET = receiver.url, SECRET
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def eager_retries(monkeypatch) -> None:
    """Let eager tasks run their retries in turn instead of raising Retry at the first failure."""
    monkeypatch.setattr(send_webhook.app.conf, "task_eager_propagates", False)


def new_escalation() -> Escalation:
    session = make_chat("I want to talk to a human")
    return Escalation.objects.create(session=session, reason="user_request", priority=2, summary="s",
                                     created_at=WEDNESDAY_10, sla_due_at=WEDNESDAY_10)


def test_the_signature_is_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"id":1}'
    expected = hmac.new(b"key", body, hashlib.sha256).hexdigest()
    assert sign(body, "key") == f"sha256={expected}"
    assert verify(body, "key", f"sha256={expected}")
    assert not verify(body + b" ", "key", f"sha256={expected}")
    assert not verify(body, "other", f"sha256={expected}")


def test_a_new_escalation_is_posted_as_signed_json_once_committed(receiver, django_capture_on_commit_callbacks) -> None:
    session = make_chat("I want to talk to a human")
    with django_capture_on_commit_callbacks(execute=True):
        escalation = escalation_open(session_id=session.pk, reason="user_request", priority="high", now=WEDNESDAY_10)
        assert receiver.requests == []  # nothing leaves before the commit
    (headers, body), = receiver.requests
    assert headers["content-type"] == "application/json"
    assert verify(body, SECRET, headers["x-supportdesk-signature"])
    assert headers["x-supportdesk-delivery"] == str(escalation.pk)
    data = json.loads(body)
    assert data["event"] == "escalation.opened" and data["id"] == escalation.pk
    assert (data["reason"], data["priority"], data["session"]) == ("user_request", "high", str(session.public_id))
    assert data["sla_due_at"] == escalation.sla_due_at.isoformat()
    escalation.refresh_from_db()
    assert escalation.webhook_sent_at is not None


def test_a_failing_receiver_is_retried_until_it_accepts(receiver, eager_retries) -> None:
    receiver.statuses = [500, 503]
    escalation = new_escalation()
    # Eager apply runs each retry of the decorator's policy in turn (without the backoff wait).
    result = send_webhook.apply(args=(escalation.pk,))
    assert result.successful()
    assert len(receiver.requests) == 3
    assert len({body for _, body in receiver.requests}) == 1  # the same payload each time
    escalation.refresh_from_db()
    assert escalation.webhook_sent_at is not None


def test_a_receiver_that_keeps_failing_gives_up_after_the_retries(receiver, eager_retries) -> None:
    receiver.statuses = [500] * 20
    escalation = new_escalation()
    result = send_webhook.apply(args=(escalation.pk,))
    assert result.failed() and isinstance(result.result, WebhookFailed)
    assert len(receiver.requests) == send_webhook.max_retries + 1 == 9
    escalation.refresh_from_db()
    assert escalation.webhook_sent_at is None


def test_an_error_status_raises_so_the_task_retries(receiver) -> None:
    receiver.statuses = [502]
    escalation = new_escalation()
    with pytest.raises(WebhookFailed, match="HTTP 502"):
        escalation_webhook_send(escalation_id=escalation.pk)
    escalation.refresh_from_db()
    assert escalation.webhook_sent_at is None


def test_an_unreachable_receiver_raises_so_the_task_retries(settings) -> None:
    settings.ESCALATION_WEBHOOK_URL, settings.ESCALATION_WEBHOOK_SECRET = "http://127.0.0.1:9/", SECRET
    with pytest.raises(WebhookFailed):
        escalation_webhook_send(escalation_id=new_escalation().pk)


def test_a_delivered_webhook_is_never_sent_again(receiver) -> None:
    escalation = new_escalation()
    assert escalation_webhook_send(escalation_id=escalation.pk) is True
    assert escalation_webhook_send(escalation_id=escalation.pk) is False
    send_webhook.delay(escalation.pk)
    assert len(receiver.requests) == 1


def test_nothing_is_sent_when_no_url_is_configured_or_the_escalation_is_gone(receiver, settings) -> None:
    escalation = new_escalation()
    assert escalation_webhook_send(escalation_id=escalation.pk + 1000) is False
    settings.ESCALATION_WEBHOOK_URL = None
    assert escalation_webhook_send(escalation_id=escalation.pk) is False
    assert receiver.requests == []
