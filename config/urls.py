from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from backups_app.views import health

# The backup console is this site's main page: its list of backups needs the whole width of a
# 1280 px screen, which the navigation sidebar would take a quarter of (the breadcrumbs remain).
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health/", health, name="backups_health"),
    path("api/", include("backups_app.api.urls")),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
