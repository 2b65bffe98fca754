"""Test settings: the same real services, a separate embedded Redis and fast hashing."""
import os

# Keep tests off the developer's running `make run` Redis (tests flush databases).
os.environ.setdefault("EMBEDDED_REDIS_FILE", "test-redis.rdb")
os.environ.setdefault("LOG_LEVEL", "WARNING")

from supportdesk.settings import *  # noqa: E402,F403

# One test database per pytest process: developers (and their helpers) may run
# several suites at once against the same embedded server.
DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}  # noqa: F405
# Connections that outlive a test in other threads (Daphne, the chat hub) would keep the
# test database open when it is dropped; tests reconnect per call instead.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = VAR_DIR / "test-media"  # noqa: F405
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
