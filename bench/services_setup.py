"""What the benches need on the real servers, made when missing: a RabbitMQ vhost with the URL's
user allowed in it, and a PostgreSQL database. A fresh clone on a machine with the servers running
then benches with no step by hand; where this cannot make them it exits with one line saying how.

Only for bench/: it creates things on the servers it is pointed at, which no server code does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from urllib.parse import unquote, urlsplit, urlunsplit


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess | None:
    if shutil.which("rabbitmqctl") is None:
        return None
    try:
        return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None


def rabbitmq_vhost_ensure(broker_url: str) -> None:
    """Create the vhost of ``broker_url`` (amqp://user:pw@host:port/vhost) if it does not exist,
    with configure/write/read rights for the URL's user, through rabbitmqctl on this machine."""
    from kombu import Connection

    parts = urlsplit(broker_url)
    if parts.scheme not in {"amqp", "amqps", "pyamqp"}:
        return
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    user = unquote(parts.username or "guest")
    try:
        with Connection(broker_url, connect_timeout=5) as connection:
            connection.ensure_connection(max_retries=0)
        return
    except Exception as exc:  # noqa: BLE001 - any refusal: try to make the vhost, then say how
        reason = str(exc)
    listed = _rabbitmqctl("list_vhosts")
    if listed is not None and listed.returncode == 0 and vhost not in listed.stdout.split():
        added = _rabbitmqctl("add_vhost", vhost)
        allowed = _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        if added and added.returncode == 0 and allowed and allowed.returncode == 0:
            print(f"bench: created the RabbitMQ vhost {vhost!r} for {user!r}", file=sys.stderr)
            return
    sys.exit(
        f"bench: cannot use RabbitMQ at {parts.hostname}:{parts.port or 5672} vhost {vhost!r} ({reason}); create it with: "
        f"rabbitmqctl add_vhost {vhost} && rabbitmqctl set_permissions -p {vhost} {user} '.*' '.*' '.*'"
    )


def postgres_database_ensure(database_url: str) -> None:
    """Create the database of ``database_url`` if it does not exist, connected to the server's
    ``postgres`` database as the URL's user."""
    import psycopg2
    from psycopg2 import sql

    parts = urlsplit(database_url)
    name = unquote(parts.path[1:])
    try:
        psycopg2.connect(database_url, connect_timeout=5).close()
        return
    except psycopg2.OperationalError as exc:
        if "does not exist" not in str(exc):
            sys.exit(f"bench: cannot reach PostgreSQL at {parts.hostname}:{parts.port or 5432}: {str(exc).strip()}")
    try:
        admin = psycopg2.connect(urlunsplit(parts._replace(path="/postgres")), connect_timeout=5)
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        admin.close()
    except psycopg2.Error as exc:
        sys.exit(f"bench: cannot create the PostgreSQL database {name!r} ({str(exc).strip()}); create it with: createdb {name}")
    print(f"bench: created the PostgreSQL database {name!r}", file=sys.stderr)
