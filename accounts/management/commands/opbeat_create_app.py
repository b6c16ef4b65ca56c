"""``manage.py opbeat_create_app``: provision a user, organization and app without prompts.

For provisioning scripts and container entrypoints: stdout carries exactly one JSON object
(``organization_id``, ``app_id``, ``secret_token``) so a script can parse it; anything else goes
to stderr. Re-running it with the same arguments reuses the same user, organization and app.

Only a hash of the secret token is stored, so the token is printed when the app is created, or
with ``--rotate-token`` (a new one; the old one stops working within a minute). When an existing
app is reused without it, ``secret_token`` is null and stderr says so: a script that lost the
token asks for a new one rather than getting a value that does not work.
"""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from accounts.services import InvalidCredentials, app_provision


class Command(BaseCommand):
    help = "Create or reuse a user, an organization and an app; print their ids and the app's secret token as JSON."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--email", required=True, help="The user's email; created if new.")
        parser.add_argument("--password", required=True, help="The new user's password, or the existing user's.")
        parser.add_argument("--org", required=True, help="Organization name; reused if the user is a member of one.")
        parser.add_argument("--app", required=True, help="App name; reused if the organization has it.")
        parser.add_argument(
            "--rotate-token",
            action="store_true",
            help="Give a reused app a new secret token and print it (the old one stops working within a minute).",
        )

    def handle(self, *args, email: str, password: str, org: str, app: str, rotate_token: bool, **options) -> None:
        for name, value in (("--email", email), ("--password", password), ("--org", org), ("--app", app)):
            if not value.strip():
                raise CommandError(f"{name} must not be empty")
        try:
            validate_email(email.strip())
        except ValidationError as error:
            raise CommandError(f"--email {email!r} is not an email address") from error
        try:
            provisioned, token = app_provision(
                email=email,
                password=password,
                organization_name=org.strip(),
                app_name=app.strip(),
                rotate_token=rotate_token,
            )
        except InvalidCredentials as error:
            raise CommandError(str(error)) from error
        if token is None:
            self.stderr.write(
                f"The app {provisioned.name!r} exists; its secret token is shown only when it is made, so "
                '"secret_token" is null. Run again with --rotate-token for a new one.'
            )
        self.stdout.write(
            json.dumps(
                {
                    "organization_id": provisioned.organization.public_id,
                    "app_id": provisioned.public_id,
                    "secret_token": token,
                }
            )
        )
