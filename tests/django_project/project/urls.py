from django.http import HttpResponse
from django.urls import include, path

urlpatterns = [
    path("login/", lambda request: HttpResponse("login page"), name="login"),
    path("procsync/", include("procsync.django_ext.urls")),
]
