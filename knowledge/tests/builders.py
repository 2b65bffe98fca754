"""Real files of every format, built at test time (fpdf2, python-docx, openpyxl, python-pptx)."""
from __future__ import annotations

import io
import zipfile

import docx
import openpyxl
import pptx
from fpdf import FPDF

MB = 1024 * 1024


def make_pdf(pages: list[str], owner_password: str = "", user_password: str | None = None) -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    if owner_password:
        pdf.set_encryption(owner_password=owner_password, user_password=user_password)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 10, text)
    return bytes(pdf.output())


def make_docx() -> bytes:
    document = docx.Document()
    document.add_heading("Returns", level=1)
    document.add_paragraph("Refunds reach the original card within five business days.")
    document.add_heading("Exceptions", level=2)
    document.add_paragraph("Gift cards cannot be refunded.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_xlsx() -> bytes:
    workbook = openpyxl.Workbook()
    orders = workbook.active
    orders.title = "Orders"
    orders.append(["order", "item"])
    orders.append(["A-100", "Blue ceramic mug"])
    customers = workbook.create_sheet("Customers")
    customers.append(["name", "city"])
    customers.append(["Ada Lovelace", "London"])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def make_pptx() -> bytes:
    deck = pptx.Presentation()
    for number, body in ((1, "Welcome to the support handbook"), (2, "Warranty lasts two years")):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = f"Slide heading {number}"
        slide.placeholders[1].text = body
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def make_docx_shaped_zip(member_bytes: int) -> bytes:
    """A zip that sniffs as DOCX and holds one member of `member_bytes` zeros (tiny once deflated)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            block = bytes(MB)
            for _ in range(member_bytes // MB):
                member.write(block)
    return out.getvalue()
