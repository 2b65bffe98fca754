"""Attachments: uploaded, converted to text, attached to the next message and read by the agent."""
from __future__ import annotations

import base64

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from fpdf import FPDF

from agent.fake_llm import Behaviour
from conversations.models import Attachment, Message
from conversations.views import COOKIE

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def pdf_bytes(text: str) -> bytes:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 10, text)
    return bytes(pdf.output())


def upload(client, name: str, data: bytes):
    return client.post("/attachments/", {"file": SimpleUploadedFile(name, data)})


def test_a_pdfs_text_reaches_the_agent_with_the_next_message(client, chat, fake_llm):
    fake_llm.script(Behaviour(kind="text", text="Your invoice number is INV-7731."))
    client.cookies[COOKIE] = chat.token
    chip = upload(client, "invoice.pdf", pdf_bytes("Invoice number INV-7731 for a blue kettle."))
    attachment = Attachment.objects.get()

    client.post("/send/", {"content": "What is my invoice number?", "attachment_ids": str(attachment.pk)})

    assert f'data-attachment-id="{attachment.pk}"' in chip.content.decode()
    assert attachment.status == "ready" and "INV-7731" in attachment.text
    prompt = " ".join(str(m.get("content")) for m in fake_llm.requests[-1]["messages"])
    assert 'name="invoice.pdf"' in prompt
    assert "INV-7731 for a blue kettle" in prompt
    assert Attachment.objects.get().message == Message.objects.get(role="user")


def test_a_file_can_come_with_a_plain_form_post(client, chat, fake_llm):
    client.cookies[COOKIE] = chat.token

    client.post("/send/", {"content": "See attached", "file": SimpleUploadedFile("notes.txt", b"Order 1001 is late")})

    assert Message.objects.get(role="user").attachments.get().text.strip() == "Order 1001 is late"


def test_a_file_over_the_size_limit_is_refused_inline(client, chat, settings):
    settings.ATTACHMENT_MAX_MB = 1
    client.cookies[COOKIE] = chat.token

    response = upload(client, "big.txt", b"a" * (1024 * 1024 + 1))

    assert response.status_code == 400 and "File too large (max 1 MB)" in response.content.decode()
    assert not Attachment.objects.exists()


@pytest.mark.parametrize("name, data", [("tool.exe", b"MZ\x90\x00"), ("photo.png", b"<svg onload=alert(1)>")])
def test_an_unsupported_file_is_refused_inline(client, chat, name, data):
    client.cookies[COOKIE] = chat.token

    response = upload(client, name, data)

    assert response.status_code == 400 and "Unsupported file type" in response.content.decode()


def test_an_image_is_stored_and_shown_only_to_its_own_session(client, chat, fake_llm):
    client.cookies[COOKIE] = chat.token
    upload(client, "damage.png", PNG)
    attachment = Attachment.objects.get()
    client.post("/send/", {"content": "It arrived broken", "attachment_ids": str(attachment.pk)})

    page = client.get("/").content.decode()
    mine = client.get(f"/attachments/{attachment.pk}/")
    client.cookies[COOKIE] = "someone-else"
    theirs = client.get(f"/attachments/{attachment.pk}/")

    assert f'src="/attachments/{attachment.pk}/"' in page
    assert mine.status_code == 200 and mine["Content-Type"] == "image/png"
    assert theirs.status_code == 404


def test_with_vision_an_uploaded_image_reaches_the_model(client, chat, fake_llm, settings):
    settings.LLM_VISION = "true"
    client.cookies[COOKIE] = chat.token
    upload(client, "damage.png", PNG)

    client.post("/send/", {"content": "It arrived broken", "attachment_ids": str(Attachment.objects.get().pk)})

    content = fake_llm.requests[-1]["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "It arrived broken"}
    assert content[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()


def test_uploads_are_rate_limited(client, chat, settings):
    settings.RATE_LIMIT_UPLOADS = "1/h"
    client.cookies[COOKIE] = chat.token
    upload(client, "a.txt", b"first")

    response = upload(client, "b.txt", b"second")

    assert response.status_code == 429 and "uploading files too fast" in response.content.decode()
