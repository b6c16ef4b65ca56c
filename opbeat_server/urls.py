from django.urls import include, path

urlpatterns = [
    path("api/v1/", include("intake.urls")),
    path("", include("accounts.urls")),
    path("", include("dashboards.urls")),
]
