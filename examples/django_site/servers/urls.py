from django.urls import path

from . import views

app_name = "servers"
urlpatterns = [
    path("", views.status, name="status"),
    path("status.json", views.status_json, name="status_json"),
]
