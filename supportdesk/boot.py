"""Start-up guard shared by manage.py, asgi.py and celery.py."""
from __future__ import annotations

import sys

from supportdesk.env import EnvError


def load_settings_or_exit() -> None:
    """Import settings now, so a bad variable stops start-up with one clear line."""
    from django.conf import settings

    try:
        settings.INSTALLED_APPS  # noqa: B018 - forces the settings module to load
    except EnvError as error:
        print(f"Configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as error:  # an embedded server failing to start, a bad URL...
        print(f"Start-up error: {type(error).__name__}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
