from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

# The proxied API comes first: its routes are the hot path, resolved on every request.
urlpatterns = [
    path("", include("proxy_api.urls")),
    # The operator dashboard's JSON (staff only), ahead of the admin's own catch-all routes.
    path("admin/dashboard/", include("gateway_project.dashboard")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
]

handler400 = "proxy_api.errors.bad_request"
handler403 = "proxy_api.errors.permission_denied"
handler404 = "proxy_api.errors.not_found"
handler500 = "proxy_api.errors.server_error"
