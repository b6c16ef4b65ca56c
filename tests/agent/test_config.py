"""Configuration from keyword arguments, a framework's settings mapping and OPBEAT_* variables."""

from __future__ import annotations

from opbeat_agent import Client, config_build


def test_kwargs_over_settings_over_environment():
    config = config_build(
        kwargs={"app_id": "from-kwargs"},
        settings={"APP_ID": "from-settings", "ORGANIZATION_ID": "org-settings", "SERVERS": ["https://a.example"]},
        environ={"OPBEAT_APP_ID": "env", "OPBEAT_ORGANIZATION_ID": "env", "OPBEAT_SECRET_TOKEN": "tok-env",
                 "OPBEAT_RELEASE": "r9"},
    )
    assert config.errors == []
    assert (config.app_id, config.organization_id, config.secret_token) == ("from-kwargs", "org-settings", "tok-env")
    assert config.servers == ["https://a.example"] and config.release == "r9"


def test_environment_values_are_typed():
    config = config_build(
        environ={"OPBEAT_ORGANIZATION_ID": "o", "OPBEAT_APP_ID": "a", "OPBEAT_SECRET_TOKEN": "t",
                 "OPBEAT_SERVERS": "https://a.example, https://b.example", "OPBEAT_TIMEOUT": "2.5",
                 "OPBEAT_MAX_QUEUE_SIZE": "10", "OPBEAT_ENABLED": "false", "OPBEAT_INCLUDE_PATHS": "shop,billing"},
    )
    assert config.servers == ["https://a.example", "https://b.example"]
    assert config.timeout == 2.5 and config.max_queue_size == 10 and config.enabled is False
    assert config.include_paths == ["shop", "billing"]


def test_every_problem_is_one_readable_line():
    config = config_build(
        settings={"ORGANIZATION_ID": "o", "APP_ID": "a", "SERVERS": ["intake.example.com"], "TIMEOUT": "soon",
                  "SECRET_TOKEM": "typo"},
        settings_name="OPBEAT setting",
        environ={},
    )
    assert config.errors == [
        "OPBEAT setting: unknown option 'SECRET_TOKEM'",
        "timeout: could not convert string to float: 'soon'",
        "secret_token is not set (OPBEAT_SECRET_TOKEN or SECRET_TOKEN in the settings)",
        "servers: 'intake.example.com' is not an http:// or https:// URL",
    ]
    assert not config.sendable


def test_client_reads_the_environment(monkeypatch, recording):
    monkeypatch.setenv("OPBEAT_ORGANIZATION_ID", "org-env")
    monkeypatch.setenv("OPBEAT_APP_ID", "app-env")
    monkeypatch.setenv("OPBEAT_SECRET_TOKEN", "tok")
    monkeypatch.setenv("OPBEAT_ENVIRONMENT", "production")
    client = Client(transport=recording, instrument=False)
    client.capture_message("hi")
    event = recording.events[0]
    assert (event["organization_id"], event["app_id"], event["environment"]) == ("org-env", "app-env", "production")
