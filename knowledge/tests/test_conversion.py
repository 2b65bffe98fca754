"""Behaviour of knowledge.conversion: sniffing, limits, and MarkItDown output for every kind.

Fixtures are generated at test time (fpdf2, python-docx, openpyxl, python-pptx) so
every test shows exactly what goes in.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from knowledge import conversion
from knowledge.tests.builders import make_docx, make_docx_shaped_zip, make_pdf, make_pptx, make_xlsx
from knowledge.conversion import ConversionError, Converted, convert_bytes, sniff_kind

MB = 1024 * 1024
LIMITS = {"max_bytes": 20 * MB, "max_unzipped_bytes": 200 * MB, "timeout_s": 60.0}


def convert(data: bytes, filename: str, **overrides: float) -> Converted:
    return convert_bytes(data, filename, **{**LIMITS, **overrides})  # type: ignore[arg-type]


def refusal(data: bytes, filename: str, **overrides: float) -> ConversionError:
    with pytest.raises(ConversionError) as caught:
        convert(data, filename, **overrides)
    return caught.value


# --------------------------------------------------------------------------- fixture builders


# --------------------------------------------------------------------------- every format converts


def test_a_two_page_pdf_gets_a_marker_line_at_the_start_of_each_page() -> None:
    data = make_pdf(["Refunds take five business days.", "Exchanges are free of charge."])
    result = convert(data, "policy.pdf")
    assert result.kind == "pdf"
    page_one, page_two = result.markdown.split("<!-- page: 2 -->")
    assert page_one.startswith("<!-- page: 1 -->")
    assert "Refunds take five business days." in page_one
    assert "Exchanges are free of charge." in page_two
    assert "\f" not in result.markdown


def test_a_docx_keeps_its_headings_and_sentences_even_when_run_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # Celery may start anywhere; the worker must still find the project
    result = convert(make_docx(), "returns.docx")
    assert result.kind == "docx"
    assert "# Returns" in result.markdown
    assert "## Exceptions" in result.markdown
    assert "Refunds reach the original card within five business days." in result.markdown


def test_an_xlsx_keeps_one_heading_per_sheet_with_a_sheet_marker_before_it() -> None:
    result = convert(make_xlsx(), "book.xlsx")
    assert result.kind == "xlsx"
    assert "<!-- sheet: Orders -->\n## Orders" in result.markdown
    assert "<!-- sheet: Customers -->\n## Customers" in result.markdown
    assert "Blue ceramic mug" in result.markdown
    assert result.markdown.index("## Orders") < result.markdown.index("Blue ceramic mug")


def test_a_pptx_keeps_the_slide_number_comments() -> None:
    result = convert(make_pptx(), "deck.pptx")
    assert result.kind == "pptx"
    assert "<!-- Slide number: 1 -->" in result.markdown
    second = result.markdown.split("<!-- Slide number: 2 -->")[1]
    assert "Slide heading 2" in second
    assert "Warranty lasts two years" in second


def test_html_is_converted_to_markdown_without_its_scripts() -> None:
    page = (
        b"<!DOCTYPE html><html><head><title>Help</title><script>stealCookies()</script></head>"
        b"<body><h1>Contact</h1><p>Write to us at any time.</p></body></html>"
    )
    result = convert(page, "help.html")
    assert result.kind == "html"
    assert "# Contact" in result.markdown
    assert "Write to us at any time." in result.markdown
    assert "stealCookies" not in result.markdown


def test_markdown_passes_through_unchanged_apart_from_newlines() -> None:
    source = "# Shipping\r\n\r\nWe ship to **Canada** and the EU.\r\n"
    result = convert(source.encode(), "shipping.md")
    assert result == Converted(markdown="# Shipping\n\nWe ship to **Canada** and the EU.\n", kind="markdown")


def test_plain_text_in_windows_1252_is_decoded() -> None:
    result = convert("Caf\xe9 orders ship in 3\u20135 days.".encode("cp1252"), "notes.txt")
    assert result.kind == "text"
    assert result.markdown == "Caf\xe9 orders ship in 3\u20135 days.\n"


def test_a_semicolon_csv_becomes_a_markdown_table() -> None:
    result = convert(b"sku;name;price\nA1;Mug;4.50\nB2;Plate;7.00\n", "prices.csv")
    assert result.kind == "csv"
    lines = result.markdown.splitlines()
    assert lines[0] == "| sku | name | price |"
    assert lines[1] == "| --- | --- | --- |"
    assert "| B2 | Plate | 7.00 |" in lines


def test_json_is_pretty_printed_in_a_json_fence() -> None:
    result = convert(b'{"faq":[{"q":"Where is my order?","a":"See tracking."}]}', "faq.json")
    assert result.kind == "json"
    assert result.markdown.startswith("```json\n{\n")
    assert result.markdown.rstrip().endswith("```")
    body = result.markdown.strip().removeprefix("```json").removesuffix("```")
    assert json.loads(body) == {"faq": [{"q": "Where is my order?", "a": "See tracking."}]}


def test_a_pdf_that_is_only_encrypted_for_its_owner_still_converts() -> None:
    # No user password: any reader opens it, so it is not "password-protected".
    data = make_pdf(["Anyone may read this page."], owner_password="owner")
    assert "Anyone may read this page." in convert(data, "open.pdf").markdown


# --------------------------------------------------------------------------- failures


def test_a_corrupt_pdf_is_reported_as_corrupt_pdf() -> None:
    error = refusal(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\nthis is not a pdf at all\n", "broken.pdf")
    assert (error.code, error.message) == ("corrupt_pdf", "corrupt PDF")


def test_a_pdf_with_a_user_password_is_reported_as_password_protected() -> None:
    data = make_pdf(["Salary table"], owner_password="owner", user_password="secret")
    error = refusal(data, "salaries.pdf")
    assert (error.code, error.message) == ("password_protected", "password-protected")


def test_an_elf_binary_renamed_to_pdf_is_an_unsupported_type() -> None:
    elf = b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x02\x00\x3e\x00" + os.urandom(200)
    error = refusal(elf, "invoice.pdf")
    assert (error.code, error.message) == ("unsupported_type", "unsupported type")


def test_a_png_image_is_an_unsupported_type() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(13)
    assert refusal(png, "screenshot.png").code == "unsupported_type"


def test_a_legacy_ole_word_file_is_an_unsupported_type() -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
    error = refusal(ole, "old.doc")
    assert (error.code, error.message) == ("unsupported_type", "unsupported type")
    assert "OLE" in error.detail


def test_random_bytes_without_nul_are_an_unsupported_type() -> None:
    junk = bytes(range(1, 256)) * 40
    assert refusal(junk, "data.bin").code == "unsupported_type"


def test_an_svg_image_is_an_unsupported_type_although_it_is_text() -> None:
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><text>Hi</text></svg>'
    assert refusal(svg, "logo.svg").code == "unsupported_type"


def test_a_zip_that_is_not_an_office_file_is_an_unsupported_type() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("photos/cat.txt", "meow")
    assert refusal(out.getvalue(), "archive.docx").code == "unsupported_type"


def test_a_broken_zip_is_a_corrupt_file() -> None:
    broken = make_docx()[:400]
    error = refusal(broken, "cut.docx")
    assert (error.code, error.message) == ("corrupt_file", "corrupt or unreadable file")


def test_a_file_over_max_bytes_is_too_large_before_anything_is_parsed() -> None:
    error = refusal(b"a" * 1001, "big.txt", max_bytes=1000)
    assert (error.code, error.message) == ("too_large", "too large")
    assert convert(b"a" * 1000, "fits.txt", max_bytes=1000).kind == "text"


def test_it_refuses_a_zip_bomb_whose_declared_contents_exceed_the_unzipped_limit() -> None:
    bomb = make_docx_shaped_zip(300 * MB)
    assert len(bomb) < 2 * MB
    started = time.monotonic()
    error = refusal(bomb, "bomb.docx", max_unzipped_bytes=100 * MB)
    assert (error.code, error.message) == ("zip_bomb", "zip bomb: uncompressed size too large")
    assert time.monotonic() - started < 1.0  # decided from the directory, nothing inflated


def test_it_refuses_a_zip_member_that_compresses_more_than_a_hundredfold() -> None:
    bomb = make_docx_shaped_zip(20 * MB)
    assert refusal(bomb, "dense.docx", max_unzipped_bytes=1024 * MB).code == "zip_bomb"


def test_a_whitespace_only_text_file_is_empty_after_conversion() -> None:
    error = refusal(b" \n\t\r\n  \n", "blank.txt")
    assert (error.code, error.message) == ("empty", "empty after conversion")


def test_a_pdf_without_a_text_layer_is_empty_after_conversion() -> None:
    assert refusal(make_pdf(["", ""]), "scan.pdf").code == "empty"


def test_a_slow_conversion_is_killed_and_reported_as_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    started_children: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def recording_popen(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        child = real_popen(*args, **kwargs)  # type: ignore[call-overload]
        started_children.append(child)
        return child

    monkeypatch.setattr(conversion.subprocess, "Popen", recording_popen)
    data = make_pdf(["A perfectly normal page."])
    started = time.monotonic()
    error = refusal(data, "slow.pdf", timeout_s=0.001)
    assert (error.code, error.message) == ("timeout", "conversion timed out")
    assert time.monotonic() - started < 2.0
    assert len(started_children) == 1
    assert started_children[0].poll() is not None  # killed and reaped, not orphaned


# --------------------------------------------------------------------------- sniffing by content


@pytest.mark.parametrize(
    ("data", "filename", "kind"),
    [
        (b"%PDF-1.4\n...", "no-extension", "pdf"),
        (b"Plain words that merely claim to be a PDF.\n", "fake.pdf", "text"),
        (b"<!doctype html><p>hi</p>", "page.txt", "html"),
        (b'<p align="center"><img src="logo.png"></p>\n\n# Readme\n', "README.md", "markdown"),
        (b"<div>fragment</div>", "snippet", "html"),
        (b'[{"a": 1}]', "export.dat", "json"),
        (b"{not json", "broken.json", "text"),
        (b"id,name,city\n1,Ada,London\n2,Alan,Wilmslow\n3,Grace,Arlington\n", "people", "csv"),
        (b"Dear team, thanks, regards\nSee you soon\n", "letter", "text"),
        (b"# FAQ\n\nAnswers below.\n", "faq", "markdown"),
        (b"Just a note.\n", "note.md", "markdown"),
        ("\ufeffUTF-8 with a BOM".encode(), "bom.txt", "text"),
        ("Hello".encode("utf-16"), "utf16.txt", "text"),
    ],
)
def test_the_kind_is_sniffed_from_content_with_the_extension_as_a_hint(data: bytes, filename: str, kind: str) -> None:
    assert sniff_kind(data, filename) == kind


@pytest.mark.parametrize(
    ("data", "kind"),
    [(make_docx(), "docx"), (make_xlsx(), "xlsx"), (make_pptx(), "pptx")],
    ids=["docx", "xlsx", "pptx"],
)
def test_office_files_are_told_apart_by_their_zip_members_not_their_names(data: bytes, kind: str) -> None:
    assert sniff_kind(data, "upload.bin") == kind


def test_an_mz_executable_is_an_unsupported_type_whatever_its_name() -> None:
    executable = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(50)
    with pytest.raises(ConversionError) as caught:
        sniff_kind(executable, "manual.txt")
    assert caught.value.code == "unsupported_type"


def test_conversion_errors_only_accept_known_codes() -> None:
    with pytest.raises(ValueError, match="exploded"):
        ConversionError("exploded")
