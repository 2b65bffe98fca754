from celery import shared_task
from django.db import OperationalError

from knowledge.services import document_ingest


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, ConnectionError),
    retry_backoff=5,
    retry_backoff_max=120,
    max_retries=5,
    ignore_result=True,
)
def ingest_document(document_id: int) -> None:
    """Ingest one document; safe to run twice (see document_ingest)."""
    document_ingest(document_id=document_id)
