"""Staff feed the knowledge base here: multi-file upload, live progress, re-index."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html

from knowledge.models import Chunk, Document
from knowledge.services import Upload, document_reindex, documents_create_many


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def clean(self, data: object, initial: object = None) -> list:
        files = data if isinstance(data, (list, tuple)) else [data]
        return [super(MultipleFileField, self).clean(f, initial) for f in files if f]


class UploadForm(forms.Form):
    files = MultipleFileField(
        required=False,
        widget=MultipleFileInput(attrs={"multiple": True, "class": "dropzone-input"}),
        help_text="PDF, DOCX, XLSX, PPTX, HTML, Markdown, TXT, CSV or JSON. Drop several at once.",
    )
    title = forms.CharField(required=False, max_length=300, help_text="For pasted text (or a single file).")
    text = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 8}), label="Or paste text")

    def clean(self) -> dict:
        data = super().clean()
        if not data.get("files") and not data.get("text", "").strip():
            raise forms.ValidationError("Choose at least one file, or paste some text.")
        if data.get("text", "").strip() and not data.get("title", "").strip():
            raise forms.ValidationError("Give the pasted text a title.")
        return data

    def uploads(self) -> list[Upload]:
        files = self.cleaned_data["files"]
        single_title = self.cleaned_data["title"] if len(files) == 1 and not self.cleaned_data["text"] else ""
        items = [Upload(filename=f.name, data=f.read(), title=single_title) for f in files]
        if self.cleaned_data["text"].strip():
            title = self.cleaned_data["title"].strip()
            items.append(Upload(filename=f"{title}.md", data=self.cleaned_data["text"].encode(), title=title))
        return items


def progress_html(document: Document) -> str:
    return render_to_string("admin/knowledge/document/progress.html", {"doc": document})


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ("title", "collection", "content_type", "progress", "flagged", "failure", "created_at")
    list_filter = ("status", "collection", "content_type", "error_code")
    search_fields = ("title", "original_name", "external_id")
    readonly_fields = ("content_hash", "indexed_hash", "status", "error_code", "error", "chunks_done",
                       "chunks_total", "flagged_chunks", "uploaded_by", "indexed_at", "size", "content_type")
    actions = ("reindex", "retry_failed")
    change_list_template = "admin/knowledge/document/change_list.html"

    @admin.display(description="Status")
    def progress(self, obj: Document) -> str:
        return progress_html(obj)

    @admin.display(description="Flagged chunks")
    def flagged(self, obj: Document) -> str:
        if not obj.flagged_chunks:
            return "–"
        url = reverse("admin:knowledge_chunk_changelist") + f"?document__id__exact={obj.pk}&injection_flagged__exact=1"
        return format_html('<a href="{}">⚠ {}</a>', url, obj.flagged_chunks)

    @admin.display(description="Failure")
    def failure(self, obj: Document) -> str:
        return obj.error or ""

    def get_urls(self) -> list:
        extra = [
            path("<int:pk>/progress/", self.admin_site.admin_view(self.progress_view), name="knowledge_document_progress"),
        ]
        return extra + super().get_urls()

    def progress_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return HttpResponse(progress_html(get_object_or_404(Document, pk=pk)))

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        if not self.has_add_permission(request):
            return redirect("admin:index")
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            created, errors = documents_create_many(uploads=form.uploads(), uploaded_by=request.user)
            for error in errors:
                messages.error(request, error)
            if created:
                messages.success(request, f"{len(created)} document(s) queued for indexing.")
            return redirect("admin:knowledge_document_changelist")
        context = {**self.admin_site.each_context(request), "form": form, "opts": self.model._meta,
                   "title": "Upload documents"}
        return render(request, "admin/knowledge/document/upload.html", context)

    @admin.action(description="Re-index selected documents")
    def reindex(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        for document in queryset:
            document_reindex(document=document)
        messages.success(request, f"{queryset.count()} document(s) queued for re-indexing.")

    @admin.action(description="Retry failed documents")
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        failed = queryset.filter(status=Document.Status.FAILED)
        for document in failed:
            document_reindex(document=document)
        messages.success(request, f"{failed.count()} failed document(s) queued again.")


@admin.register(Chunk)
class ChunkAdmin(admin.ModelAdmin):
    list_display = ("document", "ordinal", "heading_path", "location", "token_count", "injection_flagged")
    list_filter = ("injection_flagged", "document__collection")
    search_fields = ("text", "heading_path", "document__title")
    list_select_related = ("document",)
    exclude = ("embedding", "search_vector")
    readonly_fields = ("document", "ordinal", "text", "heading_path", "location", "token_count", "injection_flagged")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

