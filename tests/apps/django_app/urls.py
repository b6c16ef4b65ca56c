from django.urls import path, re_path

from . import views

urlpatterns = [
    path("", views.index),
    path("error", views.error),
    path("checkout", views.checkout),
    path("api/orders", views.orders),
    path("broken-template", views.broken_template),
    path("message/<int:order_id>/", views.message),
    path("orders/<int:pk>/", views.order_detail),
    re_path(r"^legacy/(?P<code>[a-z]+)/$", views.legacy),
    path("async/error", views.async_error),
    path("async/ok", views.async_ok),
]
