from django.urls import path

from moderation import api

app_name = "moderation-api"

urlpatterns = [
    path("moderation/", api.ModerationApi.as_view(), name="moderate"),
]
