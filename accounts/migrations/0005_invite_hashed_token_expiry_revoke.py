"""Invites: the token is stored as its sha256 only, invites expire and can be revoked, and an
invite whose link the inviter was shown no longer verifies the invitee's address."""

import hashlib
from datetime import timedelta

import django.utils.timezone
from django.db import migrations, models

# accounts.services.INVITE_MAX_AGE when this migration was written; frozen here on purpose.
_MAX_AGE = timedelta(days=7)


def hash_existing_tokens(apps, schema_editor):
    Invite = apps.get_model("accounts", "Invite")
    for invite in Invite.objects.all().only("pk", "token", "created_at"):
        Invite.objects.filter(pk=invite.pk).update(
            token_hash=hashlib.sha256(invite.token.encode("utf-8", "surrogatepass")).hexdigest(),
            sent_at=invite.created_at,
            expires_at=invite.created_at + _MAX_AGE,
            # Their links were shown to the inviter on the organization page.
            verifies_email=False,
        )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_app_secret_token_drop_clear"),
    ]

    operations = [
        migrations.AddField(
            model_name="invite",
            name="token_hash",
            field=models.CharField(max_length=64, null=True),
        ),
        migrations.AddField(
            model_name="invite",
            name="sent_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AddField(
            model_name="invite",
            name="expires_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.AddField(
            model_name="invite",
            name="revoked_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="invite",
            name="verifies_email",
            field=models.BooleanField(default=True),
        ),
        migrations.RunPython(hash_existing_tokens, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name="invite",
            name="token",
        ),
        migrations.AlterField(
            model_name="invite",
            name="token_hash",
            field=models.CharField(max_length=64, unique=True),
        ),
        migrations.AlterField(
            model_name="invite",
            name="expires_at",
            field=models.DateTimeField(),
        ),
    ]
