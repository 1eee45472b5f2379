from django.urls import path

from frontend import (
    dashboard,
    gold,
    labelling,
    moderation,
    profile,
    project_settings,
    snapshots,
    team,
    training,
    views,
)

app_name = "frontend"

urlpatterns = [
    path("", views.project_list, name="project-list"),
    path("profile/", profile.profile_page, name="profile"),
    path("profile/token/", profile.profile_token, name="profile-token"),
    path("projects/new/", views.project_new, name="project-new"),
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
    path("projects/<slug:slug>/import/", views.project_import, name="project-import"),
    path("projects/<slug:slug>/label/<int:stage>/", labelling.label_page, name="label"),
    path("projects/<slug:slug>/label/<int:stage>/revise/", labelling.label_revise_view, name="label-revise"),
    path(
        "projects/<slug:slug>/label/<int:stage>/history/", labelling.label_history_view, name="label-history"
    ),
    path(
        "projects/<slug:slug>/label/<int:stage>/assignments/<int:assignment_id>/submit/",
        labelling.label_submit_view,
        name="label-submit",
    ),
    path(
        "projects/<slug:slug>/label/<int:stage>/assignments/<int:assignment_id>/skip/",
        labelling.label_skip_view,
        name="label-skip",
    ),
    path("projects/<slug:slug>/gold/", gold.gold_overview, name="gold"),
    path("projects/<slug:slug>/gold/qa/<int:qa_id>/", gold.gold_qa_edit, name="gold-qa"),
    path("projects/<slug:slug>/gold/pairs/<int:pair_id>/", gold.gold_pair_edit, name="gold-pair"),
    path("projects/<slug:slug>/dashboard/", dashboard.dashboard, name="dashboard"),
    path("projects/<slug:slug>/team/", team.team_page, name="team"),
    path("projects/<slug:slug>/settings/", project_settings.project_settings_page, name="project-settings"),
    path("projects/<slug:slug>/team/<str:username>/role/", team.team_member_role, name="team-role"),
    path("projects/<slug:slug>/team/<str:username>/remove/", team.team_member_remove, name="team-remove"),
    path("projects/<slug:slug>/team/<str:username>/pause/", team.team_member_pause, name="team-pause"),
    path("projects/<slug:slug>/team/<str:username>/exclude/", team.team_member_exclude, name="team-exclude"),
    path(
        "projects/<slug:slug>/dashboard/recompute/", dashboard.dashboard_recompute, name="dashboard-recompute"
    ),
    path(
        "projects/<slug:slug>/dashboard/adjudicate/<int:item_id>/",
        dashboard.dashboard_adjudicate,
        name="dashboard-adjudicate",
    ),
    path("projects/<slug:slug>/training/", training.training_overview, name="training"),
    path("projects/<slug:slug>/training/new/", training.training_new, name="training-new"),
    path("projects/<slug:slug>/training/jobs/<int:job_id>/", training.training_job, name="training-job"),
    path(
        "projects/<slug:slug>/training/jobs/<int:job_id>/cancel/",
        training.training_job_cancel_view,
        name="training-job-cancel",
    ),
    path(
        "projects/<slug:slug>/training/jobs/<int:job_id>/retry/",
        training.training_job_retry_view,
        name="training-job-retry",
    ),
    path(
        "projects/<slug:slug>/training/jobs/<int:job_id>/files/<str:name>",
        training.training_job_file,
        name="training-job-file",
    ),
    path("projects/<slug:slug>/moderation/", moderation.moderation_page, name="moderation"),
    path(
        "projects/<slug:slug>/moderation/models/<int:model_id>/activate/",
        moderation.moderation_activate,
        name="moderation-activate",
    ),
    path("projects/<slug:slug>/moderation/score/", moderation.moderation_score, name="moderation-score"),
    path("projects/<slug:slug>/datasets/", snapshots.snapshot_list, name="snapshots"),
    path(
        "projects/<slug:slug>/datasets/<int:snapshot_id>/status/",
        snapshots.snapshot_status,
        name="snapshot-status",
    ),
]
