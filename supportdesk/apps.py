from django.apps import AppConfig


class SupportdeskConfig(AppConfig):
    name = "supportdesk"
    verbose_name = "Supportdesk operations"

    def ready(self) -> None:
        # Bind shared_task to our Celery app in every process, web included.
        from supportdesk import celery  # noqa: F401
