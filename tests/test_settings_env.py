"""Settings resolve the environment into the embedded defaults or the production servers.

Each case imports ``opbeat_server.settings`` in a fresh ``python -c`` process with a controlled
environment, because settings are read once at import and this test process already has its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

_PROBE = """
import json
from opbeat_server import settings as s
db = s.DATABASES["default"]
print(json.dumps({
    "db_engine": db["ENGINE"], "db_name": str(db["NAME"]), "db_host": db.get("HOST"), "db_port": db.get("PORT"),
    "db_user": db.get("USER"), "db_health_checks": db.get("CONN_HEALTH_CHECKS", False),
    "broker_url": s.CELERY_BROKER_URL, "broker_options": s.CELERY_BROKER_TRANSPORT_OPTIONS,
    "broker_is_embedded": s.BROKER_IS_EMBEDDED,
    "cache_backend": s.CACHES["default"]["BACKEND"], "cache_location": s.CACHES["default"]["LOCATION"],
    "email_backend": s.EMAIL_BACKEND, "email_host": getattr(s, "EMAIL_HOST", None),
    "email_port": getattr(s, "EMAIL_PORT", None), "email_user": getattr(s, "EMAIL_HOST_USER", None),
    "email_tls": getattr(s, "EMAIL_USE_TLS", None), "email_file_path": getattr(s, "EMAIL_FILE_PATH", None),
    "secret_key": s.SECRET_KEY, "allowed_hosts": s.ALLOWED_HOSTS, "base_url": s.BASE_URL,
    "csrf_trusted_origins": s.CSRF_TRUSTED_ORIGINS, "debug": s.DEBUG,
}))
"""

# Everything settings reads; the probe starts from none of them so the host's environment
# (a developer's DATABASE_URL, CI's REQUIRE_SERVICES) cannot leak into a case.
_SETTINGS_VARS = {
    "DATABASE_URL", "BROKER_URL", "REDIS_URL", "EMAIL_URL", "EMAIL_HOST", "EMAIL_PORT", "EMAIL_HOST_USER",
    "EMAIL_HOST_PASSWORD", "EMAIL_USE_TLS", "SECRET_KEY", "ALLOWED_HOSTS", "BASE_URL", "DEBUG", "OPBEAT_VAR_DIR",
}  # fmt: skip


def settings_resolve(var_dir: Path, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in _SETTINGS_VARS and not k.startswith("OPBEAT_")}
    clean.update(OPBEAT_VAR_DIR=str(var_dir), **env)
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=clean, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def var_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


def test_embedded_defaults_keep_all_state_under_var(var_dir: Path):
    s = settings_resolve(var_dir)

    assert s["db_engine"] == "django.db.backends.sqlite3"
    assert s["db_name"] == str(var_dir / "opbeat.sqlite3")
    # The queue in SQLite under var/queue: intake and worker stay separate processes sharing it.
    assert s["broker_is_embedded"] is True
    assert s["broker_url"].startswith("sqlite-queue://")
    assert s["broker_options"] == {"path": str(var_dir / "queue" / "queue.sqlite3")}
    assert (var_dir / "queue").is_dir()
    assert s["cache_backend"] == "django.core.cache.backends.filebased.FileBasedCache"
    assert s["cache_location"] == str(var_dir / "cache")
    assert s["email_backend"] == "django.core.mail.backends.filebased.EmailBackend"
    assert s["email_file_path"] == str(var_dir / "mail")
    assert s["base_url"] == "http://127.0.0.1:8000"
    assert "127.0.0.1" in s["allowed_hosts"] and "localhost" in s["allowed_hosts"]
    assert s["debug"] is False


def test_embedded_secret_key_is_generated_once_and_kept(var_dir: Path):
    first = settings_resolve(var_dir)["secret_key"]
    second = settings_resolve(var_dir)["secret_key"]

    assert len(first) >= 50
    assert first == second == (var_dir / "secret_key").read_text().strip()
    assert settings_resolve(var_dir.parent / "other-var")["secret_key"] != first


def test_database_url_selects_postgresql(var_dir: Path):
    s = settings_resolve(var_dir, DATABASE_URL="postgres://opbeat:pw@db.example:6543/opbeat_prod")

    assert s["db_engine"] == "django.db.backends.postgresql"
    assert (s["db_host"], s["db_port"], s["db_name"], s["db_user"]) == ("db.example", 6543, "opbeat_prod", "opbeat")
    assert s["db_health_checks"] is True
    assert not (var_dir / "opbeat.sqlite3").exists()


def test_broker_url_selects_rabbitmq_with_publisher_confirms(var_dir: Path):
    s = settings_resolve(var_dir, BROKER_URL="amqp://guest:guest@mq.example:5672/opbeat")

    assert s["broker_url"] == "amqp://guest:guest@mq.example:5672/opbeat"
    assert s["broker_is_embedded"] is False
    assert s["broker_options"] == {"confirm_publish": True}


def test_redis_url_selects_the_redis_cache(var_dir: Path):
    s = settings_resolve(var_dir, REDIS_URL="redis://cache.example:6380/3")

    assert s["cache_backend"] == "django.core.cache.backends.redis.RedisCache"
    assert s["cache_location"] == "redis://cache.example:6380/3"


def test_email_url_selects_smtp(var_dir: Path):
    s = settings_resolve(var_dir, EMAIL_URL="submission://mailer:secret@mail.example:587")

    assert s["email_backend"] == "django.core.mail.backends.smtp.EmailBackend"
    assert (s["email_host"], s["email_port"], s["email_user"]) == ("mail.example", 587, "mailer")
    assert s["email_tls"] is True


def test_secret_key_hosts_and_base_url_come_from_the_environment(var_dir: Path):
    s = settings_resolve(
        var_dir,
        SECRET_KEY="from-the-environment",
        ALLOWED_HOSTS="errors.example.com, localhost",
        BASE_URL="https://errors.example.com/",
    )

    assert s["secret_key"] == "from-the-environment"
    assert not (var_dir / "secret_key").exists()
    assert s["allowed_hosts"] == ["errors.example.com", "localhost"]
    assert s["base_url"] == "https://errors.example.com"
    assert s["csrf_trusted_origins"] == ["https://errors.example.com"]
