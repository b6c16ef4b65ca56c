"""Creating an app, its settings page with the set-up snippets, and rotating its token.

The token is shown once, on the page that answers the creation or the rotation; the settings
page shows the snippets with a placeholder instead."""

from __future__ import annotations

import html
import re

import pytest
from django.urls import reverse

from accounts.models import App, secret_token_hash
from tests.factories import org_app_create

pytestmark = pytest.mark.django_db


def _code_blocks(text: str) -> list[str]:
    return [html.unescape(block) for block in re.findall(r"<pre class=\"code\"><code>(.*?)</code></pre>", text, re.S)]


def _token_on(text: str) -> str:
    match = re.search(r'<code id="secret-token">([^<]+)</code>', text)
    assert match, "the page shows no secret token"
    return match.group(1)


def test_create_app_then_settings_show_ids_token_and_setup(client, owner_org_app, settings):
    settings.BASE_URL = "https://errors.example.com"
    owner, organization, _ = owner_org_app
    client.force_login(owner)
    assert "App name" in client.get(f"/orgs/{organization.public_id}/apps/new/").text

    # The answer to the POST is the settings page with the token: the only time it is shown.
    page = client.post(f"/orgs/{organization.public_id}/apps/new/", {"name": "billing"})
    app = App.objects.get(organization=organization, name="billing")
    assert app.get_absolute_url() == f"/orgs/{organization.public_id}/apps/{app.public_id}/"
    # The same page the dashboards room serves under its own name.
    assert app.get_absolute_url() == reverse("dashboards:issue_list", args=[organization.public_id, app.public_id])
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    assert organization.public_id in page.text
    assert app.public_id in page.text
    token = _token_on(page.text)
    assert len(token) == 40
    assert "it will not be shown again" in page.text

    blocks = _code_blocks(page.text)
    code = "\n".join(blocks)
    # The original opbeat module, as its documentation sets it up.
    assert 'INSTALLED_APPS += ["opbeat.contrib.django"]' in code
    assert f'"ORGANIZATION_ID": "{organization.public_id}"' in code
    assert f'"APP_ID": "{app.public_id}"' in code
    assert f'"SECRET_TOKEN": "{token}"' in code
    assert '"SERVERS": ["https://errors.example.com"]' in code
    assert "opbeat.contrib.django.middleware.OpbeatAPMMiddleware" in code
    assert "from opbeat.contrib.flask import Opbeat" in code
    assert "from opbeat.middleware import Opbeat" in code
    # Our agent, same settings keys.
    assert 'INSTALLED_APPS += ["opbeat_agent.integrations.django"]' in code
    assert "pip install opbeat-agent" in code
    assert f'secret_token="{token}"' in code
    assert 'servers=["https://errors.example.com"]' in code
    # Each snippet is valid Python that a person can paste as is.
    for block in blocks:
        if not block.startswith("$ "):
            compile(block, "<snippet>", "exec")

    # Later visits: the same snippets with a placeholder, the token's last characters, a way to a new one.
    later = client.get(app.get_settings_url())
    assert token not in later.text
    assert token[-4:] in later.text
    assert "Rotate secret token" in later.text
    later_blocks = _code_blocks(later.text)
    assert '"SECRET_TOKEN": "<secret token>"' in "\n".join(later_blocks)
    for block in later_blocks:
        if not block.startswith("$ "):
            compile(block, "<snippet>", "exec")


def test_app_names_are_unique_in_an_organization(client, owner_org_app, outsider):
    owner, organization, _ = owner_org_app
    client.force_login(owner)
    page = client.post(f"/orgs/{organization.public_id}/apps/new/", {"name": "Web"})
    assert page.status_code == 200
    assert "has an app named Web already" in page.text
    assert App.objects.filter(organization=organization).count() == 1
    # Another organization's app of the same name does not count.
    created = client.post(f"/orgs/{organization.public_id}/apps/new/", {"name": "other"})
    assert created.status_code == 200 and 'id="secret-token"' in created.text
    assert App.objects.filter(organization=organization).count() == 2


def test_member_sees_settings_but_not_the_token_and_cannot_rotate(client, owner_org_app, member):
    _, organization, app = owner_org_app
    token_hash = app.secret_token_hash
    client.force_login(member)
    page = client.get(f"/orgs/{organization.public_id}/apps/{app.public_id}/settings/")
    assert page.status_code == 200
    assert app.public_id in page.text
    assert 'id="secret-token"' not in page.text
    assert "Rotate secret token" not in page.text
    url = f"/orgs/{organization.public_id}/apps/{app.public_id}/settings/rotate-token/"
    assert client.get(url).status_code == 403
    assert client.post(url).status_code == 403
    app.refresh_from_db()
    assert app.secret_token_hash == token_hash


def test_owner_rotates_the_token(client, owner_org_app):
    owner, organization, app = owner_org_app
    old_hash = app.secret_token_hash
    client.force_login(owner)
    url = f"/orgs/{organization.public_id}/apps/{app.public_id}/settings/rotate-token/"
    # GET only asks.
    confirm = client.get(url)
    assert confirm.status_code == 200
    assert "stops working within a minute" in confirm.text
    app.refresh_from_db()
    assert app.secret_token_hash == old_hash and app.token_rotated_at is None
    assert client.put(url).status_code == 405

    page = client.post(url)
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    token = _token_on(page.text)
    app.refresh_from_db()
    assert app.secret_token_hash != old_hash
    assert app.secret_token_hash == secret_token_hash(token.encode())
    assert app.token_rotated_at is not None
    assert "stops working within a minute" in page.text
    assert "it will not be shown again" in page.text
    assert token not in client.get(app.get_settings_url()).text


def test_another_organizations_apps_are_404(client, owner_org_app, outsider):
    _, organization, app = owner_org_app
    _, own_org, own_app = org_app_create(owner=outsider, org_name="Mine")
    token_hash = app.secret_token_hash
    client.force_login(outsider)
    urls = [
        f"/orgs/{organization.public_id}/apps/new/",
        f"/orgs/{organization.public_id}/apps/{app.public_id}/settings/",
        # Their own organization id with Acme's app id, and the other way round.
        f"/orgs/{own_org.public_id}/apps/{app.public_id}/settings/",
        f"/orgs/{organization.public_id}/apps/{own_app.public_id}/settings/",
    ]
    for url in urls:
        assert client.get(url).status_code == 404, url
    assert client.post(f"/orgs/{organization.public_id}/apps/new/", {"name": "sneaky"}).status_code == 404
    assert client.post(f"/orgs/{organization.public_id}/apps/{app.public_id}/settings/rotate-token/").status_code == 404
    assert client.post(f"/orgs/{own_org.public_id}/apps/{app.public_id}/settings/rotate-token/").status_code == 404
    # Whatever the method: a 405 would tell an outsider the ids exist.
    assert client.get(f"/orgs/{organization.public_id}/apps/{app.public_id}/settings/rotate-token/").status_code == 404
    assert client.post(f"/orgs/{organization.public_id}/apps/{app.public_id}/settings/").status_code == 404
    assert client.post(f"/orgs/{organization.public_id}/").status_code == 404
    assert client.get(f"/orgs/{organization.public_id}/invites/").status_code == 404
    app.refresh_from_db()
    assert app.secret_token_hash == token_hash
    assert not App.objects.filter(name="sneaky").exists()
