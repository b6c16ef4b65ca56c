"""Creating an app, its settings page with the set-up snippets, and rotating its token."""

from __future__ import annotations

import html
import re

import pytest
from django.urls import reverse

from accounts.models import App
from tests.factories import org_app_create

pytestmark = pytest.mark.django_db


def _code_blocks(text: str) -> list[str]:
    return [html.unescape(block) for block in re.findall(r"<pre class=\"code\"><code>(.*?)</code></pre>", text, re.S)]


def test_create_app_then_settings_show_ids_token_and_setup(client, owner_org_app, settings):
    settings.BASE_URL = "https://errors.example.com"
    owner, organization, _ = owner_org_app
    client.force_login(owner)
    assert "App name" in client.get(f"/orgs/{organization.public_id}/apps/new/").text

    response = client.post(f"/orgs/{organization.public_id}/apps/new/", {"name": "billing"})
    app = App.objects.get(organization=organization, name="billing")
    assert response["Location"] == f"/orgs/{organization.public_id}/apps/{app.public_id}/settings/"
    assert app.get_absolute_url() == f"/orgs/{organization.public_id}/apps/{app.public_id}/"
    # The same page the dashboards room serves under its own name.
    assert app.get_absolute_url() == reverse("dashboards:issue_list", args=[organization.public_id, app.public_id])

    page = client.get(response["Location"])
    assert page.status_code == 200
    assert organization.public_id in page.text
    assert app.public_id in page.text
    assert app.secret_token in page.text
    assert "Rotate secret token" in page.text

    blocks = _code_blocks(page.text)
    code = "\n".join(blocks)
    # The original opbeat module, as its documentation sets it up.
    assert 'INSTALLED_APPS += ["opbeat.contrib.django"]' in code
    assert f'"ORGANIZATION_ID": "{organization.public_id}"' in code
    assert f'"APP_ID": "{app.public_id}"' in code
    assert f'"SECRET_TOKEN": "{app.secret_token}"' in code
    assert '"SERVERS": ["https://errors.example.com"]' in code
    assert "opbeat.contrib.django.middleware.OpbeatAPMMiddleware" in code
    assert "from opbeat.contrib.flask import Opbeat" in code
    assert "from opbeat.middleware import Opbeat" in code
    # Our agent, same settings keys.
    assert 'INSTALLED_APPS += ["opbeat_agent.integrations.django"]' in code
    assert "pip install opbeat-agent" in code
    assert f'secret_token="{app.secret_token}"' in code
    assert 'servers=["https://errors.example.com"]' in code
    # Each snippet is valid Python that a person can paste as is.
    for block in blocks:
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
    assert client.post(f"/orgs/{organization.public_id}/apps/new/", {"name": "other"}).status_code == 302


def test_member_sees_settings_but_cannot_rotate(client, owner_org_app, member):
    _, organization, app = owner_org_app
    token = app.secret_token
    client.force_login(member)
    page = client.get(f"/orgs/{organization.public_id}/apps/{app.public_id}/settings/")
    assert page.status_code == 200
    assert token in page.text
    assert "Rotate secret token" not in page.text
    response = client.post(f"/orgs/{organization.public_id}/apps/{app.public_id}/settings/rotate-token/")
    assert response.status_code == 403
    app.refresh_from_db()
    assert app.secret_token == token


def test_owner_rotates_the_token(client, owner_org_app):
    owner, organization, app = owner_org_app
    old = app.secret_token
    client.force_login(owner)
    url = f"/orgs/{organization.public_id}/apps/{app.public_id}/settings/rotate-token/"
    assert client.get(url).status_code == 405
    response = client.post(url)
    assert response["Location"] == f"/orgs/{organization.public_id}/apps/{app.public_id}/settings/"
    app.refresh_from_db()
    assert app.secret_token != old
    assert app.token_rotated_at is not None
    page = client.get(response["Location"])
    assert app.secret_token in page.text
    assert old not in page.text
    assert "stops working within a minute" in page.text


def test_another_organizations_apps_are_404(client, owner_org_app, outsider):
    _, organization, app = owner_org_app
    _, own_org, own_app = org_app_create(owner=outsider, org_name="Mine")
    token = app.secret_token
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
    assert app.secret_token == token
    assert not App.objects.filter(name="sneaky").exists()
