"""The REST API under /api/: annotate's routes and the training app's, one namespace (`api:<name>`). Every route has
a row in the permission matrix test (tests/annotate/api/test_permissions.py), which fails for a route without one."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from annotate.api import urls as annotate_api
from annotate.api.views import NotFoundView
from training.api import urls as training_api

app_name = "api"

urlpatterns = [
    *annotate_api.urlpatterns,
    *training_api.urlpatterns,
    # The OpenAPI 3 document and Swagger UI (its files come from drf-spectacular-sidecar, served as our own static
    # files; the split view loads its start-up script from a URL, so no inline script is needed).
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    # Last: any other address under /api/ is a JSON 404.
    re_path(r"^.*$", NotFoundView.as_view(), name="not-found"),
]
