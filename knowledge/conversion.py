"""Turn an uploaded file into Markdown with MarkItDown, safely.

The kind of a file is decided from its bytes (the name is only a hint), size and
zip-bomb limits are checked before anything is parsed, and the parsing itself
runs in a throwaway child process that is killed hard on timeout: a hostile or
pathological upload must never hang or exhaust a Celery worker.

Pure module: no Django imports, so it can be imported and tested without settings.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

MESSAGES: dict[str, str] = {
    "corrupt_pdf": "corrupt PDF",
    "password_protected": "password-protected",
    "unsupported_type": "unsupported type",
    "too_large": "too large",
    "empty": "empty after conversion",
    "zip_bomb": "zip bomb: uncompressed size too large",
    "timeout": "conversion timed out",
    "corrupt_file": "corrupt or unreadable file",
}

KINDS = ("pdf", "docx", "xlsx", "pptx", "html", "markdown", "text", "csv", "json")
OFFICE_KINDS = frozenset({"docx", "xlsx", "pptx"})
# Kinds whose parsers are complex enough to need the timeout-guarded child process.
WORKER_KINDS = frozenset({"pdf", "docx", "xlsx", "pptx", "html", "csv"})

MARKDOWN_EXTENSIONS = frozenset({".md", ".markdown", ".mdown", ".mkd", ".mdx"})
TEXT_EXTENSIONS = frozenset({".txt", ".text", ".log"})
HTML_EXTENSIONS = frozenset({".html", ".htm", ".xhtml"})
CSV_EXTENSIONS = frozenset({".csv", ".tsv"})

# A single member this large must not also be this compressible: real Office parts never are.
BOMB_MEMBER_BYTES = 10 * 1024 * 1024
BOMB_MAX_RATIO = 100
# Address-space cap for the child: parsers that blow up hit MemoryError instead of the OOM killer.
WORKER_MEMORY_BYTES = 4 * 1024 * 1024 * 1024
PROJECT_ROOT = Path(__file__).resolve().parent.parent
_WORKER_ENV_KEPT = ("PATH", "HOME", "TMPDIR", "TEMP", "TMP", "LANG", "LC_ALL", "LC_CTYPE", "SYSTEMROOT")

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_BINARY_MAGICS = (
    b"\x7fELF",
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",
    b"MM\x00*",
    b"\x1f\x8b",
    b"7z\xbc\xaf",
    b"Rar!",
    b"\xca\xfe\xba\xbe",
    b"\xcf\xfa\xed\xfe",
    b"{\\rtf",
    b"%!PS",
)
_STRONG_HTML = ("<!doctype html", "<html", "<head", "<body")
_WEAK_HTML = re.compile(
    r"<(?:div|p|table|h[1-6]|meta|title|section|article|span|ul|ol|script|style|link|header|nav|main|form)\b"
)
_ANY_TAG = re.compile(r"<[a-zA-Z][a-zA-Z0-9]*[\s>/]")
_MARKDOWN_HINTS = re.compile(r"^(?:#{1,6}\s+\S|```|~~~|\|.*\|\s*$)|\[[^\]\n]+\]\([^)\s]+\)", re.MULTILINE)
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_MARKER_LINE = re.compile(r"^[ \t]*<!--.*?-->[ \t]*$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)


class ConversionError(Exception):
    """A file that cannot be turned into Markdown; `message` is fit to show to staff."""

    def __init__(self, code: str, detail: str = "") -> None:
        if code not in MESSAGES:
            raise ValueError(f"unknown conversion error code {code!r}")
        self.code = code
        self.message = MESSAGES[code]
        self.detail = detail
        super().__init__(f"{self.message} ({detail})" if detail else self.message)


@dataclass(frozen=True)
class Converted:
    markdown: str
    kind: str


# --------------------------------------------------------------------------- sniffing


def sniff_kind(data: bytes, filename: str) -> str:
    """Decide the file's kind from its content, using the extension only as a tie-breaker.

    Raises ConversionError("unsupported_type") for binaries, images, legacy OLE Office
    files and zips that are not OOXML, and ("corrupt_file") for a broken zip.
    """
    ext = _extension(filename)
    pdf_at = data[:1024].find(b"%PDF-")
    # Readers accept junk before the header; only trust that when the name agrees.
    if pdf_at == 0 or (pdf_at > 0 and ext == ".pdf"):
        return "pdf"
    if data.startswith(_OLE_MAGIC):
        raise ConversionError("unsupported_type", "legacy Office (OLE) file; save it as .docx/.xlsx/.pptx")
    if data.startswith(_ZIP_MAGICS):
        return _sniff_zip(data)
    return _sniff_text(decode_text(data), ext)


def _extension(filename: str) -> str:
    return os.path.splitext(filename or "")[1].lower()


def _sniff_zip(data: bytes) -> str:
    names = _zip_infos(data)
    paths = {info.filename for info in names}
    if "[Content_Types].xml" in paths:
        for prefix, kind in (("word/", "docx"), ("xl/", "xlsx"), ("ppt/", "pptx")):
            if any(path.startswith(prefix) for path in paths):
                return kind
    raise ConversionError("unsupported_type", "zip archive that is not a Word, Excel or PowerPoint file")


def _zip_infos(data: bytes) -> list[zipfile.ZipInfo]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError) as error:
        raise ConversionError("corrupt_file", f"broken zip: {error}") from error


def decode_text(data: bytes) -> str:
    """Decode bytes that should be text (UTF-8, UTF-16 with BOM, else cp1252) or refuse them."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = _try_decode(data, "utf-16")
    elif data.startswith(_BINARY_MAGICS) or b"\x00" in data:
        raise ConversionError("unsupported_type", "binary file")
    else:
        text = _try_decode(data, "utf-8-sig")
        if text is None:
            text = _try_decode(data, "cp1252")
    if text is None or not _looks_like_text(text):
        raise ConversionError("unsupported_type", "binary or undecodable file")
    return text


def _try_decode(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        return None


def _looks_like_text(text: str) -> bool:
    # Binary junk that happens to decode as cp1252 is full of C0 control characters.
    sample = text[:65536]
    if not sample:
        return True
    return len(_CONTROL_CHARS.findall(sample)) <= len(sample) // 100


def _sniff_text(text: str, ext: str) -> str:
    head = text.lstrip("\ufeff \t\r\n")
    if _is_svg(head[:4096]):
        raise ConversionError("unsupported_type", "SVG image")
    if _is_html(head[:4096], ext):
        return "html"
    if _is_json(head, ext):
        return "json"
    if _is_csv(text, ext):
        return "csv"
    if ext in MARKDOWN_EXTENSIONS:
        return "markdown"
    if ext in TEXT_EXTENSIONS:
        return "text"
    return "markdown" if _MARKDOWN_HINTS.search(text[:65536]) else "text"


def _is_svg(head: str) -> bool:
    low = head.lower()
    return low.startswith("<svg") or (low.startswith(("<?xml", "<!doctype svg")) and "<svg" in low)


def _is_html(head: str, ext: str) -> bool:
    low = head.lower()
    if low.startswith("<?xml") or low.startswith("<!--"):
        return "<html" in low
    if low.startswith(_STRONG_HTML):
        return True
    if ext in HTML_EXTENSIONS:
        return bool(_ANY_TAG.search(low))
    # Markdown and text files may legitimately open with a bit of inline HTML.
    return ext not in MARKDOWN_EXTENSIONS | TEXT_EXTENSIONS and bool(_WEAK_HTML.match(low))


def _is_json(head: str, ext: str) -> bool:
    if not head.startswith(("{", "[")) and ext != ".json":
        return False
    try:
        json.loads(head)
    except (ValueError, RecursionError):
        return False
    return True


def _is_csv(text: str, ext: str) -> bool:
    if ext in CSV_EXTENSIONS:
        return True
    if ext in MARKDOWN_EXTENSIONS | TEXT_EXTENSIONS | HTML_EXTENSIONS or ext == ".json":
        return False
    dialect = sniff_csv_dialect(text, ext, delimiters=",;\t")
    if dialect is None:
        return False
    try:
        rows = [row for row in csv.reader(io.StringIO(text[:65536]), dialect) if row][:20]
    except csv.Error:
        return False
    widths = {len(row) for row in rows[:-1]}  # the sample may cut the last row short
    return len(rows) >= 3 and len(widths) == 1 and widths.pop() >= 2


def sniff_csv_dialect(text: str, ext: str, delimiters: str = ",;\t|") -> type[csv.Dialect] | None:
    """The CSV dialect csv.Sniffer sees in the first lines, or None when it sees none."""
    sample = "\n".join(text[:65536].splitlines()[:50])
    try:
        return csv.Sniffer().sniff(sample, delimiters=delimiters)
    except csv.Error:
        return csv.excel_tab if ext == ".tsv" else None


# --------------------------------------------------------------------------- conversion


def convert_bytes(
    data: bytes, filename: str, *, max_bytes: int, max_unzipped_bytes: int, timeout_s: float
) -> Converted:
    """Convert an upload to Markdown, or raise ConversionError with a staff-readable message.

    PDFs get a `<!-- page: N -->` line at the start of every page, spreadsheets a
    `<!-- sheet: NAME -->` line before each `## NAME` heading, and slides keep
    MarkItDown's `<!-- Slide number: N -->` comments; the chunker reads these.
    """
    if len(data) > max_bytes:
        raise ConversionError("too_large", f"{len(data)} bytes > {max_bytes}")
    kind = sniff_kind(data, filename)
    if kind in OFFICE_KINDS:
        check_zip_bomb(data, max_unzipped_bytes)
    if kind in WORKER_KINDS:
        payload = data if kind not in ("html", "csv") else _normalised_text(data, kind, filename).encode("utf-8")
        markdown = run_worker(payload, kind, timeout_s)
    else:
        markdown = _convert_plain(data, kind)
    markdown = tidy_markdown(markdown)
    if not has_content(markdown, kind):
        raise ConversionError("empty")
    return Converted(markdown=markdown, kind=kind)


def check_zip_bomb(data: bytes, max_unzipped_bytes: int) -> None:
    """Refuse an Office zip whose declared contents are too big or suspiciously compressible.

    Declared sizes are enough: Python's zipfile, which every Office parser here
    uses, never inflates a member past its declared size.
    """
    total = 0
    for info in _zip_infos(data):
        total += info.file_size
        if total > max_unzipped_bytes:
            raise ConversionError("zip_bomb", f"members add up to more than {max_unzipped_bytes} bytes")
        ratio_limit = BOMB_MAX_RATIO * max(info.compress_size, 1)
        if info.file_size > BOMB_MEMBER_BYTES and info.file_size > ratio_limit:
            raise ConversionError("zip_bomb", f"{info.filename} expands more than {BOMB_MAX_RATIO}x")


def _normalised_text(data: bytes, kind: str, filename: str) -> str:
    text = decode_text(data).lstrip("\ufeff")
    if kind != "csv":
        return text
    # MarkItDown's CSV converter only reads commas; rewrite ; | and tab files as commas.
    dialect = sniff_csv_dialect(text, _extension(filename))
    if dialect is None or dialect.delimiter == ",":
        return text
    out = io.StringIO()
    try:
        csv.writer(out).writerows(csv.reader(io.StringIO(text), dialect))
    except csv.Error as error:
        raise ConversionError("corrupt_file", f"unreadable CSV: {error}") from error
    return out.getvalue()


def _convert_plain(data: bytes, kind: str) -> str:
    text = decode_text(data).lstrip("\ufeff")
    if kind != "json":
        return text
    try:
        pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        pretty = text
    return f"```json\n{pretty}\n```" if pretty.strip() else ""


def tidy_markdown(markdown: str) -> str:
    """Normalise newlines and drop what PostgreSQL text columns cannot store (NUL, lone surrogates)."""
    text = markdown.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = _TRAILING_SPACE.sub("", text)
    return _BLANK_RUNS.sub("\n\n", text).strip() + "\n"


def has_content(markdown: str, kind: str) -> bool:
    """True when something other than location markers (and, for sheets, sheet headings) is left."""
    text = _MARKER_LINE.sub("", markdown)
    if kind == "xlsx":
        text = re.sub(r"^## .*$", "", text, flags=re.MULTILINE)
    # A table made only of pipes, dashes and blanks says nothing.
    return bool(re.search(r"[^\s|:\-]", text))


# --------------------------------------------------------------------------- child process

_WORKER_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from knowledge.conversion import worker_main; raise SystemExit(worker_main(sys.argv[2:]))"
)


def run_worker(data: bytes, kind: str, timeout_s: float) -> str:
    """Run the MarkItDown conversion in a child Python, killing it (and its group) on timeout.

    A plain subprocess rather than multiprocessing, because Celery's prefork
    children are daemonic and may not start multiprocessing children.
    """
    with tempfile.TemporaryDirectory(prefix="supportdesk-convert-") as tmp:
        source, result = Path(tmp, "input"), Path(tmp, "result.json")
        source.write_bytes(data)
        command = [sys.executable, "-I", "-c", _WORKER_BOOT, str(PROJECT_ROOT), kind, str(source), str(result)]
        stderr = _wait_for_worker(command, tmp, timeout_s)
        return _read_worker_result(result, kind, stderr)


def _wait_for_worker(command: list[str], cwd: str, timeout_s: float) -> bytes:
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # own process group, so the kill reaches anything it spawned
        env=_worker_environment(),
    )
    try:
        _, stderr = process.communicate(timeout=timeout_s)
        return stderr or b""
    except subprocess.TimeoutExpired:
        raise ConversionError("timeout", f"no result after {timeout_s:g} s") from None
    finally:
        # Also reached when Celery's soft time limit interrupts us: never leave the child behind.
        if process.poll() is None:
            _kill_group(process)


def _worker_environment() -> dict[str, str]:
    # The child parses hostile files: it gets no secrets (database URL, API keys) from our environment.
    kept = {name: os.environ[name] for name in _WORKER_ENV_KEPT if name in os.environ}
    return {**kept, "OMP_NUM_THREADS": "1"}


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


def _read_worker_result(result: Path, kind: str, stderr: bytes) -> str:
    failure = "corrupt_pdf" if kind == "pdf" else "corrupt_file"
    try:
        outcome = json.loads(result.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        # No result file: the child died (crash, signal) before it could say why.
        raise ConversionError(failure, stderr.decode("utf-8", "replace")[-300:].strip()) from None
    if not outcome.get("ok"):
        raise ConversionError(outcome.get("code", failure), outcome.get("detail", ""))
    return str(outcome["markdown"])


def worker_main(argv: list[str]) -> int:
    """Entry point of the child process: convert one file, write the outcome as JSON."""
    kind, source, result = argv
    _limit_memory()
    try:
        outcome = {"ok": True, "markdown": convert_in_worker(kind, Path(source).read_bytes())}
    except ConversionError as error:
        outcome = {"ok": False, "code": error.code, "detail": error.detail}
    except MemoryError:
        outcome = {"ok": False, "code": "too_large", "detail": "conversion ran out of memory"}
    except Exception as error:  # any parser failure means the file is unreadable
        code = "corrupt_pdf" if kind == "pdf" else "corrupt_file"
        outcome = {"ok": False, "code": code, "detail": f"{type(error).__name__}: {error}"[:300]}
    Path(result).write_text(json.dumps(outcome), encoding="utf-8")
    return 0


def _limit_memory() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    except (ImportError, ValueError, OSError):
        pass  # best effort: not every platform lets us lower the limit


def convert_in_worker(kind: str, data: bytes) -> str:
    """Convert with MarkItDown's converter for `kind` (called directly: no magika, no plugins, no LLM)."""
    if kind == "pdf":
        return _convert_pdf(data)
    markdown = _markitdown(kind, data)
    return _mark_sheets(markdown) if kind == "xlsx" else markdown


def _markitdown(kind: str, data: bytes) -> str:
    from markitdown import StreamInfo
    from markitdown.converters import (
        CsvConverter,
        DocxConverter,
        HtmlConverter,
        PdfConverter,
        PptxConverter,
        XlsxConverter,
    )

    converters = {
        "pdf": PdfConverter,
        "docx": DocxConverter,
        "xlsx": XlsxConverter,
        "pptx": PptxConverter,
        "html": HtmlConverter,
        "csv": CsvConverter,
    }
    info = StreamInfo(extension=f".{kind}", charset="utf-8" if kind in ("html", "csv") else None)
    return converters[kind]().convert(io.BytesIO(data), info).markdown or ""


def _mark_sheets(markdown: str) -> str:
    # Table rows start with "|", so a "## " line in MarkItDown's xlsx output is a sheet heading.
    def marker(match: re.Match[str]) -> str:
        name = match.group(1).replace("-->", "")
        return f"<!-- sheet: {name} -->\n{match.group(0)}"

    return re.sub(r"^## (.*)$", marker, markdown, flags=re.MULTILINE)


def _convert_pdf(data: bytes) -> str:
    page_count = pdf_page_count(data)
    markdown = _markitdown("pdf", data)
    pages = _split_pdf_pages(markdown, data, page_count)
    marked = [f"<!-- page: {number} -->\n{text.strip()}" for number, text in enumerate(pages, 1) if text.strip()]
    return "\n\n".join(marked)


def pdf_page_count(data: bytes) -> int:
    """Open the PDF with an empty password; refuse encrypted or unparsable ones."""
    from pdfminer.pdfdocument import PDFDocument, PDFEncryptionError
    from pdfminer.pdfpage import PDFPage
    from pdfminer.pdfparser import PDFParser

    try:
        document = PDFDocument(PDFParser(io.BytesIO(data)), password="")
        count = sum(1 for _ in PDFPage.create_pages(document))
    except PDFEncryptionError as error:
        raise ConversionError("password_protected", type(error).__name__) from error
    except Exception as error:
        raise ConversionError("corrupt_pdf", f"{type(error).__name__}: {error}"[:300]) from error
    if count == 0:
        raise ConversionError("corrupt_pdf", "no pages")
    return count


def _split_pdf_pages(markdown: str, data: bytes, page_count: int) -> list[str]:
    if "\f" in markdown:
        pages = markdown.split("\f")
        # pdfminer ends every page, including the last, with a form feed.
        return pages[:-1] if len(pages) > page_count and not pages[-1].strip() else pages
    if page_count == 1:
        return [markdown]
    # MarkItDown's table-aware path joins pages with blank lines; redo it page by page.
    return _pdf_pages_with_plumber(data)


def _pdf_pages_with_plumber(data: bytes) -> list[str]:
    import pdfplumber
    from markitdown.converters import _pdf_converter

    form_content = getattr(_pdf_converter, "_extract_form_content_from_words", None)
    pages: list[str] = []
    with pdfplumber.open(io.BytesIO(data)) as pdf:
        for page in pdf.pages:
            text = form_content(page) if form_content else None
            pages.append(text if text is not None else page.extract_text() or "")
            page.close()
    return pages
