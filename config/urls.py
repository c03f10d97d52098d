from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from backups_app.views import health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health/", health, name="backups_health"),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
