"""Drops the apps' clear secret tokens (hashed by the previous migration). A separate migration,
so PostgreSQL alters the table in another transaction than the one that updated its rows.

Going back gives every app a new random token (the clear ones are gone): agents need the new one.
"""

import secrets

from django.db import migrations, models

import accounts.models


def tokens_new_clear(apps, schema_editor):
    App = apps.get_model("accounts", "App")
    for app in App.objects.only("pk"):
        app.secret_token = secrets.token_hex(20)
        app.save(update_fields=["secret_token"])


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_app_secret_token_hash"),
    ]

    operations = [
        # Nullable and not unique first, so that going back can add the column empty and fill it.
        migrations.AlterField(
            model_name="app",
            name="secret_token",
            field=models.CharField(max_length=64, null=True),
        ),
        migrations.RunPython(migrations.RunPython.noop, tokens_new_clear),
        migrations.RemoveField(
            model_name="app",
            name="secret_token",
        ),
        migrations.AlterField(
            model_name="app",
            name="secret_token_hash",
            field=models.CharField(default=accounts.models.secret_token_hash_of_nothing, max_length=64, unique=True),
        ),
    ]
