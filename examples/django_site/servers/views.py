"""The site's own page about its servers: a view that uses this process's orchestrator."""

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from procsync.django_ext import get_orchestrator


@staff_member_required  # anyone else is sent to the admin login page
def overview(request: HttpRequest) -> HttpResponse:
    servers = get_orchestrator().get_server_status()  # made and initialized on first use
    return render(request, "servers/overview.html", {"servers": servers})
