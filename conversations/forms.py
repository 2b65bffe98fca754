"""Validation of what a customer sends, shared by the page, the socket and the API."""
from __future__ import annotations

from django import forms

from conversations.services import MAX_CLIENT_ID_CHARS, MAX_MESSAGE_CHARS

MAX_ATTACHMENTS = 5


class MessageForm(forms.Form):
    content = forms.CharField(required=False, max_length=MAX_MESSAGE_CHARS, strip=True)
    client_message_id = forms.CharField(required=False, max_length=MAX_CLIENT_ID_CHARS)
    attachment_ids = forms.CharField(required=False, max_length=200)

    def clean_attachment_ids(self) -> tuple[int, ...]:
        raw = self.cleaned_data.get("attachment_ids") or ""
        parts = [p for p in raw.replace(" ", "").split(",") if p]
        if len(parts) > MAX_ATTACHMENTS or not all(p.isdigit() for p in parts):
            raise forms.ValidationError("Bad attachment list.")
        return tuple(int(p) for p in parts)

    def first_error(self) -> str:
        for errors in self.errors.values():
            return str(errors[0])
        return "Invalid message."


def message_form(data: object) -> MessageForm:
    """A MessageForm over a socket frame or JSON body, refusing non-string values."""
    if not isinstance(data, dict):
        data = {}
    clean = {}
    for key in ("content", "client_message_id", "attachment_ids"):
        value = data.get(key, "")
        if isinstance(value, list):  # htmx sends repeated inputs as a list
            value = ",".join(str(v) for v in value)
        clean[key] = value if isinstance(value, str) else "\x00bad"
    return MessageForm(data=clean)


class FeedbackForm(forms.Form):
    value = forms.ChoiceField(choices=[("up", "👍"), ("down", "👎")])
    comment = forms.CharField(required=False, max_length=2000)


class UploadForm(forms.Form):
    file = forms.FileField()
