"""Forms for the accounts pages: they parse and validate what a person typed, nothing more.

Emails are compared and stored lower-cased, because people type them with random capitals and
``User.email`` is unique. Forms never write: views hand their cleaned data to ``accounts.services``.
"""

from __future__ import annotations

from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm

from .models import App, Membership, Organization, User

# AbstractUser.username (which we fill with the email) holds 150 characters.
EMAIL_MAX_LENGTH = 150


class EmailAuthenticationForm(AuthenticationForm):
    # Django's message says both fields may be case-sensitive; here the email is not.
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That email and password do not match an account (the password is case-sensitive).",
    }
    username = forms.EmailField(
        label="Email",
        max_length=EMAIL_MAX_LENGTH,
        widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}),
    )

    def clean_username(self) -> str:
        return self.cleaned_data["username"].strip().lower()


class SignupForm(forms.Form):
    email = forms.EmailField(max_length=EMAIL_MAX_LENGTH, widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    password = forms.CharField(
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 8 characters, not a common password.",
    )
    organization_name = forms.CharField(
        label="Organization name",
        max_length=Organization._meta.get_field("name").max_length,
        help_text="Your company or team; you can invite teammates to it.",
    )

    def __init__(self, *args, with_organization: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        # Someone accepting an invite joins the inviter's organization instead of creating one.
        if not with_organization:
            del self.fields["organization_name"]

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this email exists already: log in instead.")
        return email

    def clean_organization_name(self) -> str:
        name = self.cleaned_data["organization_name"].strip()
        if not name:
            raise forms.ValidationError("Give your organization a name.")
        return name

    def clean(self):
        cleaned = super().clean()
        password = cleaned.get("password")
        if password:
            try:
                password_validation.validate_password(password, User(email=cleaned.get("email") or ""))
            except forms.ValidationError as error:
                self.add_error("password", error)
        return cleaned


class OrganizationForm(forms.Form):
    name = forms.CharField(label="Organization name", max_length=Organization._meta.get_field("name").max_length)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the organization a name.")
        return name


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=EMAIL_MAX_LENGTH, widget=forms.EmailInput(attrs={"placeholder": "teammate@example.com"}))

    def __init__(self, *args, organization: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.organization = organization

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if Membership.objects.filter(organization=self.organization, user__email__iexact=email).exists():
            raise forms.ValidationError(f"{email} is a member of {self.organization.name} already.")
        return email


class AppForm(forms.Form):
    name = forms.CharField(
        label="App name",
        max_length=App._meta.get_field("name").max_length,
        help_text="For example the project or service name: web, api, billing-worker.",
    )

    def __init__(self, *args, organization: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.organization = organization

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the app a name.")
        if App.objects.filter(organization=self.organization, name__iexact=name).exists():
            raise forms.ValidationError(f"{self.organization.name} has an app named {name} already.")
        return name
