"""What the dashboard itself remembers for a member (never events or their figures)."""

from __future__ import annotations

from django.db import models

from accounts.models import App


class EnvironmentChoice(models.Model):
    """The environment a member last chose on an app's pages; no row means all environments."""

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="+")
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="+")
    environment = models.CharField(max_length=100)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "app"], name="environment_choice_unique")]
