from django.urls import path

from annotate.api import projects

app_name = "annotate-api"

urlpatterns = [
    path("projects/", projects.ProjectListCreateApi.as_view(), name="project-list"),
    path("projects/<slug:slug>/", projects.ProjectDetailApi.as_view(), name="project-detail"),
]
