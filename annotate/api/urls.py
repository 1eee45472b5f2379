from django.urls import include, path

from annotate.api import exports, imports, me, members, projects, tasks

app_name = "annotate-api"

urlpatterns = [
    path("me/", me.MeApi.as_view(), name="me"),
    path("me/token/", me.MeTokenApi.as_view(), name="me-token"),
    path("projects/", projects.ProjectListCreateApi.as_view(), name="project-list"),
    path("projects/<slug:slug>/", projects.ProjectDetailApi.as_view(), name="project-detail"),
    path("projects/<slug:slug>/members/", members.MemberListCreateApi.as_view(), name="project-members"),
    path(
        "projects/<slug:slug>/members/<str:username>/",
        members.MemberDetailApi.as_view(),
        name="project-member",
    ),
    path(
        "projects/<slug:slug>/members/<str:username>/exclude-labels/",
        members.MemberExcludeLabelsApi.as_view(),
        name="project-member-exclude-labels",
    ),
    path("projects/<slug:slug>/tasks/next/", tasks.NextTaskApi.as_view(), name="task-next"),
    path("assignments/<int:assignment_id>/submit/", tasks.SubmitApi.as_view(), name="assignment-submit"),
    path("assignments/<int:assignment_id>/skip/", tasks.SkipApi.as_view(), name="assignment-skip"),
    path("projects/<slug:slug>/imports/", imports.ImportCreateApi.as_view(), name="project-imports"),
    path("projects/<slug:slug>/exports/", exports.ExportListCreateApi.as_view(), name="project-exports"),
    path("exports/<int:snapshot_id>/", exports.ExportDetailApi.as_view(), name="export-detail"),
    path("exports/<int:snapshot_id>/files/<str:name>", exports.ExportFileApi.as_view(), name="export-file"),
    path("", include("annotate.api.agreement")),
]
