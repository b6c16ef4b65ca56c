"""Apps keep their secret token's SHA-256 instead of the token (the next migration drops the
token). Existing tokens are hashed, so agents already configured keep working; the intake's
second cache tier, which held tokens in clear under ``intake:app:<org>:<app>``, is emptied of them.
"""

import hashlib
import sys

from django.db import migrations, models


def tokens_hash(apps, schema_editor):
    App = apps.get_model("accounts", "App")
    old_cache_keys = []
    for app in App.objects.select_related("organization").only("pk", "secret_token", "public_id", "organization__public_id"):
        app.secret_token_hash = hashlib.sha256(app.secret_token.encode()).hexdigest()
        app.secret_token_hint = app.secret_token[-4:]
        app.save(update_fields=["secret_token_hash", "secret_token_hint"])
        old_cache_keys.append(f"intake:app:{app.organization.public_id}:{app.public_id}")
    if not old_cache_keys:
        return
    from django.core.cache import cache

    try:
        cache.delete_many(old_cache_keys)
    except Exception as exc:  # noqa: BLE001 - the cache being down must not block the upgrade; the entries expire within 7 days
        print(f"accounts: could not delete the intake's cached tokens ({exc}); they expire within 7 days", file=sys.stderr)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_email_verification"),
    ]

    operations = [
        migrations.AddField(
            model_name="app",
            name="secret_token_hash",
            field=models.CharField(max_length=64, null=True),
        ),
        migrations.AddField(
            model_name="app",
            name="secret_token_hint",
            field=models.CharField(blank=True, default="", max_length=4),
        ),
        # Going back, the next migration (reversed) has given apps new clear tokens already.
        migrations.RunPython(tokens_hash, migrations.RunPython.noop),
    ]
