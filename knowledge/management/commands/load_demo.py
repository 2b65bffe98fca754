from pathlib import Path

from django.core.management.base import BaseCommand

from knowledge.models import Document
from knowledge.services import content_hash, document_create

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"


def demo_title(path: Path) -> str:
    first = path.read_text(encoding="utf-8").lstrip().splitlines()[0]
    return first.lstrip("#").strip() if first.startswith("#") else path.stem


class Command(BaseCommand):
    help = "Load the demo help centre (idempotent: articles already loaded are skipped)."

    def handle(self, *args: object, **options: object) -> None:
        added = 0
        for path in sorted(DEMO_DIR.glob("*.md")):
            data = path.read_bytes()
            if Document.objects.filter(content_hash=content_hash(data)).exists():
                continue
            document_create(data=data, filename=path.name, title=demo_title(path), tags=["demo"])
            added += 1
        total = len(list(DEMO_DIR.glob("*.md")))
        self.stdout.write(f"  demo help centre: {added} added, {total - added} already there")
