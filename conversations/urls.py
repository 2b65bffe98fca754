from django.urls import path

from conversations import views

urlpatterns = [
    path("", views.chat_page, name="chat"),
]
