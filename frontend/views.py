from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from annotate.selectors import projects_for_user


@login_required
def project_list(request: HttpRequest) -> HttpResponse:
    return render(request, "frontend/project_list.html", {"projects": projects_for_user(request.user)})
