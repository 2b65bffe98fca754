from django.apps import AppConfig


class KnowledgeConfig(AppConfig):
    name = "knowledge"

    def ready(self) -> None:
        # Register the app's Prometheus series at start-up so /metrics lists them from the first scrape.
        from knowledge import metrics  # noqa: F401
