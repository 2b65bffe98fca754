import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the `admin` superuser once (password from DJANGO_SUPERUSER_PASSWORD or generated)."

    def handle(self, *args: object, **options: object) -> None:
        users = get_user_model().objects
        saved = settings.VAR_DIR / "admin_password"
        if users.filter(username="admin").exists():
            hint = f" (password in {saved})" if saved.exists() else ""
            self.stdout.write(f"  admin user: exists{hint}")
            return
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or secrets.token_urlsafe(12)
        users.create_superuser("admin", "admin@localhost", password)
        if "DJANGO_SUPERUSER_PASSWORD" not in os.environ:
            saved.write_text(password + "\n")
            saved.chmod(0o600)
            self.stdout.write(f"  admin user: created with password {password} (kept in {saved})")
        else:
            self.stdout.write("  admin user: created with DJANGO_SUPERUSER_PASSWORD")
