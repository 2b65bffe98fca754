from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"

    def ready(self) -> None:
        # Register the app's Prometheus series at start-up so /metrics lists them from the first scrape.
        from conversations import metrics  # noqa: F401
