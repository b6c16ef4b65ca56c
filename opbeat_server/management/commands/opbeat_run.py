"""``manage.py opbeat_run``: the whole service in one command (embedded mode by default).

Migrates, collects static files, then runs the web server (UI and intake) and a Celery worker with
beat as child processes until Ctrl-C or SIGTERM, starting again any that exits (with backoff; see
``supervisor``). With no environment set, that is SQLite and the SQLite queue under var/; with DATABASE_URL, BROKER_URL and REDIS_URL it runs the same
processes against PostgreSQL, RabbitMQ and Redis. This command never serves requests or digests
events itself: it only prepares the database and supervises the processes that do.
"""

from __future__ import annotations

import argparse
import os

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from opbeat_server.management import supervisor


class Command(BaseCommand):
    help = "Migrate, collect static files, and run the web server and a Celery worker (with beat) together."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8000, help="Port to listen on (default 8000).")
        parser.add_argument("--workers", type=int, default=2, help="Web server processes (default 2).")
        parser.add_argument(
            "--concurrency",
            type=int,
            default=1,
            # SQLite takes one writer at a time, so more worker processes would only queue on its lock.
            help="Celery worker processes (default 1).",
        )
        parser.add_argument("--startup-timeout", type=float, default=60.0, help=argparse.SUPPRESS)

    def handle(self, *args, host: str, port: int, workers: int, concurrency: int, startup_timeout: float, **options):
        if workers < 1 or concurrency < 1:
            raise CommandError("--workers and --concurrency must be at least 1")
        if not supervisor.port_check_free(host=host, port=port):
            raise CommandError(f"{host}:{port} is already in use; pick another with --port")

        call_command("migrate", interactive=False, verbosity=1)
        call_command("collectstatic", interactive=False, verbosity=0)
        if settings.BROKER_IS_EMBEDDED:
            from opbeat_server.queue_sqlite import filesystem_messages_import

            moved = filesystem_messages_import(
                folder=settings.QUEUE_DIR, path=settings.BROKER_TRANSPORT_OPTIONS["path"]
            )
            if moved:
                self.stdout.write(
                    f"Moved {moved} queued message(s) of the former on-disk queue into {settings.QUEUE_DIR}."
                )

        url_host = f"[{host}]" if ":" in host else host
        url = f"http://{url_host}:{port}/"
        env = dict(os.environ)
        env.setdefault("DJANGO_SETTINGS_MODULE", "opbeat_server.settings")
        # The intake's Location header and the links in e-mails are built from BASE_URL: unless it
        # was set on purpose, point it at the server we are about to start.
        env.setdefault("BASE_URL", url.rstrip("/"))
        if host in {"0.0.0.0", "::"} and "ALLOWED_HOSTS" not in os.environ:
            self.stderr.write(
                f"Listening on all interfaces, but ALLOWED_HOSTS is {','.join(settings.ALLOWED_HOSTS)}: "
                "set ALLOWED_HOSTS (and BASE_URL) to the names this server is reached by."
            )

        children = [
            supervisor.Child("web server", supervisor.web_argv(host=host, port=port, workers=workers)),
            supervisor.Child(
                "celery worker",
                supervisor.worker_argv(concurrency=concurrency, schedule_path=settings.VAR_DIR / "celerybeat-schedule"),
            ),
        ]
        supervisor.stop_signals_install()
        try:
            supervisor.children_start(children=children, env=env)
            if not supervisor.port_wait_listening(host=host, port=port, children=children, timeout=startup_timeout):
                exited = supervisor.child_exited(children)
                reason = f"the {exited.name} exited" if exited else f"nothing listened on {port} in time"
                raise CommandError(f"Opbeat Server did not start: {reason}")
            self.stdout.write(f"Opbeat Server is running at {url}")
            self.stdout.write("Press Ctrl-C to stop.")
            self.stdout.flush()
            supervisor.children_supervise(children=children, env=env, log=self._log)
        except supervisor.ChildKeepsDying as dying:
            child = dying.child
            raise CommandError(
                f"The {child.name} exited with code {child.process.returncode} {child.quick_deaths} times in a row, "
                "each time within a minute of starting; stopping Opbeat Server.",
                returncode=1,
            ) from None
        except supervisor.StopRequested as stop:
            supervisor.stop_signals_ignore()
            self.stdout.write(f"Stopping Opbeat Server ({stop}).")
        finally:
            supervisor.stop_signals_ignore()
            supervisor.children_stop(children=children, grace_seconds=20.0)
        self.stdout.write("Opbeat Server stopped.")

    def _log(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
