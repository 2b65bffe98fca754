from django.contrib import admin
from django.urls import include, path

from supportdesk import health

admin.site.site_header = "Supportdesk"
admin.site.site_title = "Supportdesk admin"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("", include("django_prometheus.urls")),
    path("admin/", admin.site.urls),
    path("", include("conversations.urls")),
]
