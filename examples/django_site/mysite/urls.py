from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("procsync/", include("procsync.django_ext.urls")),  # the dashboard, API and events
    path("servers/", include("servers.urls")),
]
