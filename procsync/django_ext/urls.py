"""``path("procsync/", include("procsync.django_ext.urls"))``: the API, events and dashboard."""

from django.urls import re_path

from .mount import procsync_view

app_name = "procsync"
urlpatterns = [
    re_path(r"^(?P<path>.*)$", procsync_view, name="procsync"),
]
