from django.apps import AppConfig


class DashboardsConfig(AppConfig):
    name = "dashboards"

    def ready(self) -> None:
        from accounts.signals import member_removed

        from .issue_actions import on_member_removed

        member_removed.connect(on_member_removed, dispatch_uid="dashboards.issues_unassign_member")
