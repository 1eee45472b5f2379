from django.urls import path

from training import api

app_name = "training-api"

urlpatterns = [
    path("training-jobs/", api.TrainingJobListCreateApi.as_view(), name="job-list"),
    path("training-jobs/<int:job_id>/", api.TrainingJobDetailApi.as_view(), name="job-detail"),
    path("training-jobs/<int:job_id>/cancel/", api.TrainingJobCancelApi.as_view(), name="job-cancel"),
    path("training-jobs/<int:job_id>/retry/", api.TrainingJobRetryApi.as_view(), name="job-retry"),
    path("training-jobs/<int:job_id>/files/<str:name>", api.TrainingJobFileApi.as_view(), name="job-file"),
    path("models/", api.ModelListApi.as_view(), name="model-list"),
    path("models/<int:model_id>/activate/", api.ModelActivateApi.as_view(), name="model-activate"),
]
