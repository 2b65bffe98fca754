"""`ingest` and `load_demo` management commands."""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from knowledge.management.commands.load_demo import DEMO_DIR
from knowledge.models import Document

pytestmark = pytest.mark.django_db(transaction=True)


def test_ingest_sync_indexes_a_folder_and_fails_with_the_reasons(tmp_path):
    (tmp_path / "guides").mkdir()
    (tmp_path / "guides" / "shipping.md").write_text("# Shipping\n\nWe ship in two days.")
    (tmp_path / "guides" / "broken.pdf").write_bytes(b"%PDF-1.7\nnot a pdf\n%%EOF")
    out = StringIO()
    with pytest.raises(CommandError, match=r"some files failed:\n  broken.pdf: corrupt PDF"):
        call_command("ingest", str(tmp_path / "guides"), "--sync", stdout=out, stderr=StringIO())
    assert "1 ready, 0 skipped, 1 failed" in out.getvalue()
    assert Document.objects.get(original_name="shipping.md").status == Document.Status.READY


def test_ingest_skips_content_it_already_has_and_succeeds(tmp_path):
    path = tmp_path / "faq.txt"
    path.write_text("Gift cards never expire.")
    call_command("ingest", str(path), "--sync", stdout=StringIO(), stderr=StringIO())
    out = StringIO()
    call_command("ingest", str(path), "--sync", stdout=out, stderr=StringIO())
    assert "skipped: faq.txt: the same content is already uploaded" in out.getvalue()
    assert Document.objects.count() == 1


def test_ingest_refuses_a_path_that_does_not_exist(tmp_path):
    with pytest.raises(CommandError, match="no such file or folder"):
        call_command("ingest", str(tmp_path / "missing"), "--sync")


def test_the_demo_help_centre_loads_once(settings):
    out = StringIO()
    call_command("load_demo", stdout=out)
    articles = len(list(DEMO_DIR.glob("*.md")))
    assert 10 <= articles <= 20
    assert f"{articles} added, 0 already there" in out.getvalue()
    assert Document.objects.filter(status=Document.Status.READY, tags__contains=["demo"]).count() == articles
    again = StringIO()
    call_command("load_demo", stdout=again)
    assert f"0 added, {articles} already there" in again.getvalue()
