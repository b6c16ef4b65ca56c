"""URLs of the accounts room (no namespace: templates/base.html and Django's auth views use these
names). The map shared by all rooms is in the briefs' URL contract; ids are public ids."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("signup/", views.signup, name="signup"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "password-reset/",
        views.PasswordResetView.as_view(),
        name="password_reset",
    ),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password-reset/<uidb64>/<token>/",
        views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("password-reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    # "resend" first: a signed token never spells it, but the order makes that not matter.
    path("verify-email/resend/", views.verify_email_resend, name="verify_email_resend"),
    path("verify-email/<str:token>/", views.verify_email, name="verify_email"),
    path("orgs/new/", views.org_create, name="org_create"),
    path("orgs/<str:org_id>/", views.org_detail, name="org_detail"),
    path("orgs/<str:org_id>/leave/", views.org_leave, name="org_leave"),
    path("orgs/<str:org_id>/members/<int:membership_id>/remove/", views.member_remove, name="member_remove"),
    path("orgs/<str:org_id>/members/<int:membership_id>/role/", views.member_role, name="member_role"),
    path("orgs/<str:org_id>/invites/", views.invite_create, name="invite_create"),
    path("orgs/<str:org_id>/invites/<int:invite_id>/revoke/", views.invite_revoke, name="invite_revoke"),
    path("invites/<str:token>/", views.invite_accept, name="invite_accept"),
    path("orgs/<str:org_id>/apps/new/", views.app_new, name="app_new"),
    path("orgs/<str:org_id>/apps/<str:app_id>/settings/", views.app_settings, name="app_settings"),
    path(
        "orgs/<str:org_id>/apps/<str:app_id>/settings/rotate-token/",
        views.app_token_rotate,
        name="app_token_rotate",
    ),
]
