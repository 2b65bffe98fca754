from django.contrib import admin

from conversations.models import Attachment, ChatSession, Memory, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("created_at", "role", "author_name", "content", "status", "feedback")
    readonly_fields = fields
    can_delete = False


@admin.register(ChatSession)
class ChatSessionAdmin(admin.ModelAdmin):
    list_display = ("public_id", "state", "end_user_email", "last_activity_at", "expires_at")
    list_filter = ("state",)
    search_fields = ("public_id", "end_user_email", "end_user_id")
    readonly_fields = ("public_id", "token_hash", "created_at")
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("session", "role", "short_content", "status", "feedback", "created_at")
    list_filter = ("role", "status", "feedback", "grounded")
    search_fields = ("content", "feedback_comment")
    raw_id_fields = ("session", "reply_to", "author")

    @admin.display(description="Content")
    def short_content(self, obj: Message) -> str:
        return obj.content[:80]


@admin.register(Memory)
class MemoryAdmin(admin.ModelAdmin):
    list_display = ("session", "kind", "key", "content", "expires_at")
    list_filter = ("kind",)
    raw_id_fields = ("session",)


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    list_display = ("original_name", "session", "content_type", "size", "status", "created_at")
    list_filter = ("status",)
    raw_id_fields = ("session", "message")
