from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def chat_page(request: HttpRequest) -> HttpResponse:
    return render(request, "conversations/chat.html")
