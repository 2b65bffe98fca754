"""`manage.py ingest PATH...`: add files or folders through the same pipeline as admin."""
from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from knowledge.models import DEFAULT_COLLECTION, Document
from knowledge.services import DocumentRejected, document_create

FINAL = (Document.Status.READY, Document.Status.FAILED)


def collect_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise CommandError(f"{raw}: no such file or folder")
        found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        files.extend(p for p in found if not any(part.startswith(".") for part in p.parts[-1:]))
    return files


class Command(BaseCommand):
    help = "Add files or whole folders to the knowledge base and wait until they are indexed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+")
        parser.add_argument("--sync", action="store_true", help="Index in this process instead of the workers.")
        parser.add_argument("--collection", default=DEFAULT_COLLECTION)
        parser.add_argument("--tag", action="append", default=[], dest="tags")
        parser.add_argument("--timeout", type=float, default=1800, help="Seconds to wait for the workers.")

    def handle(self, *args: object, **opts: object) -> None:
        if opts["sync"]:
            from supportdesk.celery import app

            app.conf.task_always_eager = True  # the same task, run inline
        documents, skipped, failures = self._create(collect_files(opts["paths"]), opts)
        for line in skipped:
            self.stdout.write(f"skipped: {line}")
        self._wait(documents, float(opts["timeout"]))
        indexed = Document.objects.filter(pk__in=[d.pk for d in documents])
        failures += [f"{d.original_name}: {d.error}" for d in indexed.filter(status=Document.Status.FAILED)]
        ready = indexed.filter(status=Document.Status.READY).count()
        self.stdout.write(f"{ready} ready, {len(skipped)} skipped, {len(failures)} failed")
        if failures:
            raise CommandError("some files failed:\n  " + "\n  ".join(failures))

    def _create(self, files: list[Path], opts: dict) -> tuple[list[Document], list[str], list[str]]:
        documents, skipped, failures = [], [], []
        for path in tqdm(files, desc="queueing", unit="file", disable=len(files) < 2):
            try:
                documents.append(document_create(data=path.read_bytes(), filename=path.name,
                                                 collection=opts["collection"], tags=opts["tags"]))
            except DocumentRejected as error:
                (skipped if error.existing else failures).append(str(error))
        return documents, skipped, failures

    def _wait(self, documents: list[Document], timeout: float) -> None:
        ids = [d.pk for d in documents]
        deadline = time.monotonic() + timeout
        with tqdm(total=len(ids), desc="indexing", unit="doc") as bar:
            while True:
                done = Document.objects.filter(pk__in=ids, status__in=FINAL).count()
                bar.update(done - bar.n)
                if done == len(ids):
                    return
                if time.monotonic() > deadline:
                    raise CommandError(f"timed out: {len(ids) - done} document(s) still indexing; are workers running?")
                time.sleep(0.5)
