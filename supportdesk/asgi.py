"""ASGI entry point: HTTP through Django, WebSockets through Channels."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportdesk.settings")
os.environ.setdefault("EMBEDDING_THREADS", "1")  # many short query encodes; threads would only contend

from supportdesk.boot import load_settings_or_exit  # noqa: E402

load_settings_or_exit()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from conversations.routing import websocket_urlpatterns  # noqa: E402
from knowledge.embeddings import warm_up_in_background  # noqa: E402

warm_up_in_background()  # queries need the model; load it before the first one arrives

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)
