from django.apps import AppConfig


class AgentConfig(AppConfig):
    name = "agent"

    def ready(self) -> None:
        # Register the app's Prometheus series at start-up so /metrics lists them from the first scrape.
        from agent import metrics  # noqa: F401
