"""The accounts pages: sign-up, home, organizations, invites, apps and their settings.

Thin views: they resolve what the URL names through ``accounts.selectors`` (another
organization's object is a 404), check the role, validate a form and call ``accounts.services``.
They never query across tenants themselves.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from opbeat_server.client_ip import client_ip

from . import login_limits, selectors, services, verification
from .forms import AppForm, EmailAuthenticationForm, InviteForm, OrganizationForm, SignupForm
from .models import App, Membership, Organization, User
from .snippets import app_setup_snippets

# The Django backend name login() needs when a user was not returned by authenticate().
_BACKEND = "django.contrib.auth.backends.ModelBackend"


class LoginView(auth_views.LoginView):
    """Django's login, throttled (``accounts.login_limits``) before the password hasher runs."""

    authentication_form = EmailAuthenticationForm
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        email = login_limits.email_normalize(request.POST.get("username", ""))
        # Without both fields the form fails before checking a password: nothing to count.
        if email and request.POST.get("password"):
            wait = login_limits.login_attempt_admit(email=email, ip=client_ip(request))
            if wait:
                return self._throttled(email=email, wait=wait)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        login_limits.login_succeeded(email=form.cleaned_data["username"], ip=client_ip(self.request))
        return super().form_valid(form)

    def _throttled(self, *, email: str, wait: int) -> HttpResponse:
        # A fresh form: validating the posted one would run the password hasher.
        form = self.get_form_class()(request=self.request, initial={"username": email})
        context = self.get_context_data(form=form, throttled=login_limits.login_throttled_message(wait))
        response = self.render_to_response(context, status=429)
        response["Retry-After"] = str(wait)
        return response


class PasswordResetView(auth_views.PasswordResetView):
    """Django's view, with links built from BASE_URL rather than the request's Host header
    (which a client chooses: a forged Host would otherwise put its own domain in the email), and
    limited per target email and per client address. Whether a mail left or not, the answer is
    the same redirect, so the page tells nobody whether an address has an account."""

    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"

    def form_valid(self, form):
        if not login_limits.password_reset_admit(email=form.cleaned_data["email"], ip=client_ip(self.request)):
            return HttpResponseRedirect(self.get_success_url())
        self.extra_email_context = {"base_url": settings.BASE_URL}
        return super().form_valid(form)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's view; a new password set through the mailed link also lifts the login lock on
    the account (the mailbox proved the owner)."""

    def form_valid(self, form):
        response = super().form_valid(form)
        login_limits.login_account_unlock(email=form.user.email, ip=client_ip(self.request))
        return response


def _method_not_allowed(request: HttpRequest, *allowed: str) -> HttpResponseNotAllowed | None:
    """Checked after the tenancy lookup, not by a decorator before it: another organization's URL
    is a 404 whatever the method, so a 405 never tells an outsider that an id exists."""
    if request.method in allowed:
        return None
    return HttpResponseNotAllowed(allowed)


def _require_owner(user: User, organization: Organization) -> Membership:
    membership = selectors.membership_for_member(user, organization)
    if membership.role != Membership.Role.OWNER:
        raise PermissionDenied("Only an owner of this organization can do that.")
    return membership


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user, organization = services.user_signup(
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password"],
            organization_name=form.cleaned_data["organization_name"],
        )
        verification.user_verification_send(user=user)
        login(request, user, backend=_BACKEND)
        messages.success(
            request,
            f"Welcome! We sent a link to {user.email} to verify it. "
            f"Create your first app in {organization.name} to get its token.",
        )
        return redirect(organization)
    return render(request, "accounts/signup.html", {"form": form})


@require_http_methods(["GET"])
def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect("login")
    organizations = list(selectors.organizations_for_member(request.user))
    if len(organizations) == 1:
        return redirect(organizations[0])
    return render(request, "accounts/home.html", {"organizations": organizations, "form": OrganizationForm()})


@login_required
@require_http_methods(["GET", "POST"])
def org_create(request: HttpRequest) -> HttpResponse:
    form = OrganizationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        organization = services.organization_create(name=form.cleaned_data["name"], owner=request.user)
        return redirect(organization)
    return render(request, "accounts/org_create.html", {"form": form})


def _org_page(request: HttpRequest, organization: Organization, invite_form: InviteForm | None = None) -> HttpResponse:
    membership = selectors.membership_for_member(request.user, organization)
    is_owner = membership.role == Membership.Role.OWNER
    invites = []
    if is_owner:
        # Only owners see the pending links: a link is enough to join.
        invites = [(invite, services.invite_url(invite=invite)) for invite in selectors.invites_pending(organization)]
    return render(
        request,
        "accounts/org_detail.html",
        {
            "organization": organization,
            "is_owner": is_owner,
            "apps": selectors.apps_of_organization(organization),
            "memberships": selectors.memberships_of_organization(organization),
            "invites": invites,
            "invite_form": invite_form or InviteForm(organization=organization),
        },
    )


@login_required
def org_detail(request: HttpRequest, org_id: str) -> HttpResponse:
    organization = selectors.organization_for_member(request.user, org_id)
    if not_allowed := _method_not_allowed(request, "GET", "HEAD"):
        return not_allowed
    return _org_page(request, organization)


@login_required
def invite_create(request: HttpRequest, org_id: str) -> HttpResponse:
    organization = selectors.organization_for_member(request.user, org_id)
    if not_allowed := _method_not_allowed(request, "POST"):
        return not_allowed
    _require_owner(request.user, organization)
    form = InviteForm(request.POST, organization=organization)
    if not form.is_valid():
        return _org_page(request, organization, invite_form=form)
    invite = services.invite_create(organization=organization, email=form.cleaned_data["email"], invited_by=request.user)
    messages.success(
        request,
        f"Invite sent to {invite.email}. If mail does not reach them, send them this link: "
        f"{services.invite_url(invite=invite)}",
    )
    return redirect(organization)


@require_http_methods(["GET", "POST"])
def invite_accept(request: HttpRequest, token: str) -> HttpResponse:
    invite = selectors.invite_pending_for_token(token)
    organization = invite.organization
    if request.user.is_authenticated:
        if request.method == "POST":
            services.invite_accept(invite=invite, user=request.user)
            messages.success(request, f"You joined {organization.name}.")
            return redirect(organization)
        already_member = Membership.objects.filter(organization=organization, user=request.user).exists()
        return render(
            request,
            "accounts/invite_accept.html",
            {"invite": invite, "organization": organization, "already_member": already_member},
        )

    form = SignupForm(request.POST or None, with_organization=False, initial={"email": invite.email})
    if request.method == "POST" and form.is_valid():
        user, _ = services.user_signup(
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password"],
            organization_name=None,
        )
        # Signing up with the address the invite was mailed to verifies it (services.invite_accept);
        # any other address gets its own link.
        services.invite_accept(invite=invite, user=user)
        if user.email != invite.email:
            verification.user_verification_send(user=user)
        login(request, user, backend=_BACKEND)
        messages.success(request, f"Welcome! You joined {organization.name}.")
        return redirect(organization)
    return render(request, "accounts/invite_accept.html", {"invite": invite, "organization": organization, "form": form})


@login_required
def app_new(request: HttpRequest, org_id: str) -> HttpResponse:
    organization = selectors.organization_for_member(request.user, org_id)
    if not_allowed := _method_not_allowed(request, "GET", "HEAD", "POST"):
        return not_allowed
    _require_owner(request.user, organization)
    form = AppForm(request.POST or None, organization=organization)
    if request.method == "POST" and form.is_valid():
        app, token = services.app_create(organization=organization, name=form.cleaned_data["name"])
        # The answer to this POST is the one page that shows the token: only its hash is kept.
        return _app_settings_page(request, app, secret_token=token, notice=f"{app.name} is ready.")
    return render(request, "accounts/app_new.html", {"organization": organization, "form": form})


def _app_settings_page(request: HttpRequest, app: App, *, secret_token: str | None = None, notice: str = "") -> HttpResponse:
    """The app's ids and set-up snippets; with ``secret_token``, the page that shows it once."""
    membership = selectors.membership_for_member(request.user, app.organization)
    response = render(
        request,
        "accounts/app_settings.html",
        {
            "app": app,
            "organization": app.organization,
            "is_owner": membership.role == Membership.Role.OWNER,
            "secret_token": secret_token,
            "notice": notice,
            "snippets": app_setup_snippets(app=app, secret_token=secret_token),
            "server_url": settings.BASE_URL,
        },
    )
    if secret_token:
        # Neither the browser's cache nor a proxy may keep a copy of the page with the token.
        add_never_cache_headers(response)
    return response


@login_required
def app_settings(request: HttpRequest, org_id: str, app_id: str) -> HttpResponse:
    app = selectors.app_for_member(request.user, org_id, app_id)
    if not_allowed := _method_not_allowed(request, "GET", "HEAD"):
        return not_allowed
    return _app_settings_page(request, app)


@login_required
def app_token_rotate(request: HttpRequest, org_id: str, app_id: str) -> HttpResponse:
    """GET asks (what rotating does), POST rotates and shows the new token once."""
    app = selectors.app_for_member(request.user, org_id, app_id)
    if not_allowed := _method_not_allowed(request, "GET", "HEAD", "POST"):
        return not_allowed
    _require_owner(request.user, app.organization)
    if request.method != "POST":
        return render(request, "accounts/app_token_rotate.html", {"app": app, "organization": app.organization})
    token = services.app_token_rotate(app=app)
    return _app_settings_page(
        request,
        app,
        secret_token=token,
        notice="New secret token created. Update your apps' settings: the old token stops working within a minute.",
    )


@require_http_methods(["GET"])
def verify_email(request: HttpRequest, token: str) -> HttpResponse:
    """The link mailed at sign-up. No login needed: the token proves the mailbox. Following it
    again is harmless (it verifies the same address)."""
    user = verification.user_email_verify(token=token)
    if user is not None and request.user.is_authenticated and request.user.pk == user.pk:
        request.user.email_verified_at = user.email_verified_at  # the banner goes on this very page
    return render(request, "accounts/verify_email.html", {"verified_user": user}, status=200 if user else 400)


@login_required
@require_http_methods(["POST"])
def verify_email_resend(request: HttpRequest) -> HttpResponse:
    if request.user.email_verified_at is not None:
        messages.info(request, f"{request.user.email} is verified already.")
    elif verification.user_verification_send(user=request.user):
        messages.success(request, f"We sent a new link to {request.user.email}.")
    else:
        messages.warning(request, "A link left less than a minute ago: check your mail, or try again in a minute.")
    next_url = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure())
    if not safe:
        next_url = "home"
    return redirect(next_url)
