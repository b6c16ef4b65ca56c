"""The accounts pages: sign-up, home, organizations, members, invites, apps and their settings.

Thin views: they resolve what the URL names through ``accounts.selectors`` (another
organization's object is a 404, whatever the method), check the role (a member doing an owner's
action is a 403), validate a form and call ``accounts.services``; results are flash messages.
They never query across tenants themselves. Destructive actions (removing a member, leaving,
changing a role, revoking an invite) show a confirmation page on GET and act only on POST: a
plain form, no JavaScript ``confirm()``.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from opbeat_server.client_ip import client_ip

from . import login_limits, selectors, services, verification
from .forms import AppForm, EmailAuthenticationForm, InviteForm, OrganizationForm, SignupForm
from .mail_limits import MailLimited
from .models import App, Invite, Membership, Organization, User
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


def _verification_send_quietly(user: User) -> None:
    try:
        verification.user_verification_send(user=user)
    except MailLimited:
        # Only if mail to this address was limited already; the banner offers another link later.
        pass


def _confirm(
    request: HttpRequest, *, question: str, detail: str, button: str, cancel: str, fields: dict | None = None
) -> HttpResponse:
    """The page a destructive action shows on GET: the question, [button] and Cancel."""
    return render(
        request,
        "accounts/confirm.html",
        {
            "question": question,
            "detail": detail,
            "button": button,
            "action": request.path,
            "cancel": cancel,
            "fields": (fields or {}).items(),
        },
    )


def _signup_throttled(request: HttpRequest, template: str, context: dict, wait: int) -> HttpResponse:
    messages.error(request, login_limits.signup_throttled_message(wait))
    response = render(request, template, context, status=429)
    response["Retry-After"] = str(wait)
    return response


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and (wait := login_limits.signup_admit(ip=client_ip(request))):
        return _signup_throttled(request, "accounts/signup.html", {"form": SignupForm()}, wait)
    if request.method == "POST" and form.is_valid():
        user, organization = services.user_signup(
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password"],
            organization_name=form.cleaned_data["organization_name"],
        )
        _verification_send_quietly(user)
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
    return render(
        request,
        "accounts/org_detail.html",
        {
            "organization": organization,
            "is_owner": is_owner,
            "my_membership": membership,
            "apps": selectors.apps_of_organization(organization),
            "memberships": selectors.memberships_of_organization(organization),
            # Only owners see who is invited; nobody sees the links (they are in the mails only).
            "invites": selectors.invites_pending(organization) if is_owner else [],
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
    """Invite an address, or mail a pending invite again (the "Resend" button posts here too)."""
    organization = selectors.organization_for_member(request.user, org_id)
    if not_allowed := _method_not_allowed(request, "POST"):
        return not_allowed
    _require_owner(request.user, organization)
    form = InviteForm(request.POST, organization=organization)
    if not form.is_valid():
        return _org_page(request, organization, invite_form=form)
    email = form.cleaned_data["email"]
    try:
        invite = services.invite_create(organization=organization, email=email, invited_by=request.user)
    except MailLimited as limited:
        messages.error(
            request,
            f"No invite was sent: {email} (or {organization.name}) got as many invite mails as we send "
            f"for now. You can try again in {limited.wait_text()}.",
        )
        return redirect(organization)
    messages.success(
        request,
        f"Invite sent to {invite.email}; the link in it works for {services.INVITE_MAX_AGE.days} days. "
        f"If it does not arrive, send it again from the list of pending invites.",
    )
    return redirect(organization)


@login_required
def invite_revoke(request: HttpRequest, org_id: str, invite_id: int) -> HttpResponse:
    organization = selectors.organization_for_member(request.user, org_id)
    invite = selectors.invite_of_organization(organization, invite_id)
    if not_allowed := _method_not_allowed(request, "GET", "HEAD", "POST"):
        return not_allowed
    _require_owner(request.user, organization)
    if request.method == "POST":
        services.invite_revoke(invite=invite)
        messages.success(
            request, f"The invite of {invite.email} to {organization.name} was revoked: its link no longer works."
        )
        return redirect(organization)
    return _confirm(
        request,
        question=f"Revoke the invite of {invite.email} to {organization.name}?",
        detail="The link mailed to them stops working. You can invite them again later.",
        button="Revoke invite",
        cancel=organization.get_absolute_url(),
    )


@login_required
def member_remove(request: HttpRequest, org_id: str, membership_id: int) -> HttpResponse:
    organization = selectors.organization_for_member(request.user, org_id)
    target = selectors.membership_of_organization(organization, membership_id)
    if not_allowed := _method_not_allowed(request, "GET", "HEAD", "POST"):
        return not_allowed
    if target.user_id == request.user.pk:
        return redirect("org_leave", org_id=organization.public_id)
    _require_owner(request.user, organization)
    email = target.user.email
    if request.method == "POST":
        try:
            services.membership_remove(membership=target)
        except services.LastOwner:
            messages.error(request, f"{email} is the last owner of {organization.name} and cannot be removed.")
        else:
            messages.success(request, f"{email} was removed from {organization.name}.")
        return redirect(organization)
    return _confirm(
        request,
        question=f"Remove {email} from {organization.name}?",
        detail="They lose access to its apps at once, and new issues are no longer assigned to them.",
        button="Remove",
        cancel=organization.get_absolute_url(),
    )


@login_required
def member_role(request: HttpRequest, org_id: str, membership_id: int) -> HttpResponse:
    """GET ?role=owner|member asks, POST role=owner|member changes it."""
    organization = selectors.organization_for_member(request.user, org_id)
    target = selectors.membership_of_organization(organization, membership_id)
    if not_allowed := _method_not_allowed(request, "GET", "HEAD", "POST"):
        return not_allowed
    _require_owner(request.user, organization)
    role = (request.POST if request.method == "POST" else request.GET).get("role", "")
    if role not in Membership.Role.values:
        return HttpResponse("Unknown role.", status=400, content_type="text/plain")
    email, label = target.user.email, Membership.Role(role).label.lower()
    if request.method == "POST":
        try:
            services.membership_role_set(membership=target, role=role)
        except services.LastOwner:
            messages.error(
                request, f"{email} is the last owner of {organization.name}: make someone else an owner first."
            )
        else:
            messages.success(
                request,
                f"{email} is now {'an' if role == Membership.Role.OWNER else 'a'} {label} of {organization.name}.",
            )
        return redirect(organization)
    if role == Membership.Role.OWNER:
        detail = "Owners invite and remove members, change roles, and manage apps and their tokens."
    else:
        detail = "Members see the organization's apps and issues but cannot invite, remove or change roles."
    return _confirm(
        request,
        question=f"Make {email} {'an' if role == Membership.Role.OWNER else 'a'} {label} of {organization.name}?",
        detail=detail,
        button=f"Make {label}",
        cancel=organization.get_absolute_url(),
        fields={"role": role},
    )


@login_required
def org_leave(request: HttpRequest, org_id: str) -> HttpResponse:
    organization = selectors.organization_for_member(request.user, org_id)
    if not_allowed := _method_not_allowed(request, "GET", "HEAD", "POST"):
        return not_allowed
    membership = selectors.membership_for_member(request.user, organization)
    if request.method == "POST":
        try:
            services.membership_remove(membership=membership)
        except services.LastOwner:
            messages.error(
                request,
                f"You are the last owner of {organization.name}: make another member an owner before you leave.",
            )
            return redirect(organization)
        messages.success(request, f"You left {organization.name}.")
        return redirect("home")
    return _confirm(
        request,
        question=f"Leave {organization.name}?",
        detail="You lose access to its apps and issues; an owner would have to invite you again.",
        button="Leave",
        cancel=organization.get_absolute_url(),
    )


def _invite_unusable(request: HttpRequest, invite: Invite | None) -> HttpResponse:
    """A clear page for a link that joins nothing: unknown (404), or used, revoked, expired (410)."""
    state = invite.state() if invite is not None else "unknown"
    return render(
        request,
        "accounts/invite_unusable.html",
        {"invite": invite, "state": state, "organization": invite.organization if invite else None},
        status=404 if invite is None else 410,
    )


@require_http_methods(["GET", "POST"])
def invite_accept(request: HttpRequest, token: str) -> HttpResponse:
    try:
        invite = selectors.invite_for_token(token)
    except Http404:
        return _invite_unusable(request, None)
    if invite.state() != Invite.State.PENDING:
        return _invite_unusable(request, invite)
    organization = invite.organization
    action = reverse("invite_accept", kwargs={"token": token})
    if request.user.is_authenticated:
        if request.method == "POST":
            try:
                services.invite_accept(invite=invite, user=request.user)
            except services.InviteNotUsable:
                return _invite_unusable(request, invite)
            messages.success(request, f"You joined {organization.name}.")
            return redirect(organization)
        already_member = Membership.objects.filter(organization=organization, user=request.user).exists()
        return render(
            request,
            "accounts/invite_accept.html",
            {"invite": invite, "organization": organization, "already_member": already_member, "action": action},
        )

    form = SignupForm(request.POST or None, with_organization=False, initial={"email": invite.email})
    if request.method == "POST" and form.is_valid():
        try:
            # One transaction: an invite used up meanwhile leaves no account behind.
            with transaction.atomic():
                user, _ = services.user_signup(
                    email=form.cleaned_data["email"],
                    password=form.cleaned_data["password"],
                    organization_name=None,
                )
                # Signing up with the address the invite was mailed to verifies it
                # (services.invite_accept); any other address gets its own link.
                services.invite_accept(invite=invite, user=user)
        except services.InviteNotUsable:
            return _invite_unusable(request, invite)
        user.refresh_from_db()
        if user.email_verified_at is None:
            _verification_send_quietly(user)
        login(request, user, backend=_BACKEND)
        messages.success(request, f"Welcome! You joined {organization.name}.")
        return redirect(organization)
    return render(
        request,
        "accounts/invite_accept.html",
        {"invite": invite, "organization": organization, "form": form, "action": action},
    )


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
    try:
        sent = verification.user_verification_send(user=request.user)
    except MailLimited as limited:
        messages.warning(
            request,
            f"We cannot send another link yet: check your mail for the last one, or try again in {limited.wait_text()}.",
        )
    else:
        if sent:
            messages.success(request, f"We sent a new link to {request.user.email}.")
        else:
            messages.info(request, f"{request.user.email} is verified already.")
    next_url = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    if not safe:
        next_url = "home"
    return redirect(next_url)
