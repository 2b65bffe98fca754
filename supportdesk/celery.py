"""Celery application: tasks are discovered in each app's tasks.py."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportdesk.settings")

from supportdesk.boot import load_settings_or_exit  # noqa: E402

load_settings_or_exit()

app = Celery("supportdesk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["supportdesk", "knowledge", "conversations", "agent", "escalations"])
