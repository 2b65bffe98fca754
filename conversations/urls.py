from django.urls import path

from conversations import api, views

urlpatterns = [
    path("", views.chat_page, name="chat"),
    path("new/", views.chat_new, name="chat_new"),
    path("send/", views.message_send, name="send"),
    path("handover/", views.session_handover, name="handover"),
    path("attachments/", views.attachment_upload, name="attachment_upload"),
    path("attachments/<int:attachment_id>/", views.attachment_file, name="attachment_file"),
    path("messages/<int:message_id>/feedback/", views.message_feedback, name="feedback"),
    path("sources/<int:chunk_id>/", views.source_detail, name="source"),
    path("api/sessions", api.sessions_create, name="api_sessions"),
    path("api/sessions/<str:session_id>/messages", api.session_messages, name="api_messages"),
    path("api/openapi.json", api.openapi, name="api_openapi"),
]
