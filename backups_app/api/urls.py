from django.contrib.admin.views.decorators import staff_member_required
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import IsAdminUser
from rest_framework.routers import SimpleRouter

from .views import BackupViewSet, CleanupView, DrillViewSet, RestoreViewSet, StatsView

app_name = "api"

router = SimpleRouter()
router.register("backups", BackupViewSet, basename="backup")
router.register("restores", RestoreViewSet, basename="restore")
router.register("drills", DrillViewSet, basename="drill")

urlpatterns = [
    *router.urls,
    path("stats/", StatsView.as_view(), name="stats"),
    path("cleanup/", CleanupView.as_view(), name="cleanup"),
    # The OpenAPI 3 schema and its Swagger page, for staff (the page sends whoever is not to the admin's login).
    path("schema/", SpectacularAPIView.as_view(permission_classes=[IsAdminUser]), name="schema"),
    path(
        "docs/",
        staff_member_required(SpectacularSwaggerView.as_view(url_name="api:schema", permission_classes=[IsAdminUser])),
        name="docs",
    ),
]
