from celery import shared_task
from django.db import OperationalError

from escalations.services import escalations_sweep
from escalations.webhooks import WebhookFailed, escalation_webhook_send


@shared_task(
    acks_late=True,
    autoretry_for=(WebhookFailed, OperationalError),
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=8,
    ignore_result=True,
)
def send_webhook(escalation_id: int) -> None:
    """Deliver the new-escalation webhook; sends at most once (webhook_sent_at)."""
    escalation_webhook_send(escalation_id=escalation_id)


@shared_task(ignore_result=True)
def sweep() -> None:
    """Every 30 s (CELERY_BEAT_SCHEDULE): SLA breaches, emails left out of hours, queue gauge."""
    escalations_sweep()
