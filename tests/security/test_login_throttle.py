"""Login throttling and password-reset limits, as an attacker and an account's owner see them.

The throttle counts in fixed windows of the real clock; these tests pin that clock to the start of
an hour (and move it) through ``accounts.throttle``'s time source, so nothing sleeps and no test
straddles a window boundary by chance.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from django.core.cache import cache

import accounts.throttle
from accounts.models import User
from tests.factories import user_create
from tests.security.hashers import CountingHasher

PASSWORD = "correct horse battery"
VICTIM = "victim@example.com"
ATTACKER_IP = "198.51.100.66"
VICTIM_IP = "203.0.113.10"
pytestmark = pytest.mark.django_db
THROTTLED = re.compile(r"Too many failed attempts\. Try again in (\d+) minutes?\.")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0  # the start of an hour: every window starts here

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def clock(monkeypatch, settings) -> Clock:
    cache.clear()
    # Fast and counted (see ``hashes``); a real hasher would make hundreds of logins take minutes.
    settings.PASSWORD_HASHERS = ["tests.security.hashers.CountingHasher"]
    clock = Clock()
    monkeypatch.setattr(accounts.throttle, "time", SimpleNamespace(time=clock.time))
    return clock


@pytest.fixture
def hashes():
    """How many times the password hasher ran since the fixture started."""
    start = CountingHasher.calls
    return lambda: CountingHasher.calls - start


def login(client, email: str, password: str, ip: str, **headers):
    return client.post("/login/", {"username": email, "password": password}, REMOTE_ADDR=ip, **headers)


def logged_in(response) -> bool:
    return response.status_code == 302 and response.wsgi_request.user.is_authenticated


def test_sixty_wrong_passwords_are_throttled_and_the_right_one_waits_for_the_window(client, clock, hashes):
    user_create(email=VICTIM)
    before = hashes()
    answers = [login(client, VICTIM, f"guess {n}", ATTACKER_IP) for n in range(60)]

    assert [a.status_code for a in answers[:10]] == [200] * 10
    assert all("do not match an account" in a.text for a in answers[:10])
    assert [a.status_code for a in answers[10:]] == [429] * 50
    match = THROTTLED.search(answers[-1].text)
    assert match, answers[-1].text
    assert 1 <= int(match.group(1)) <= 15
    assert int(answers[-1]["Retry-After"]) <= 15 * 60
    # The fifty refused guesses never reached the hasher.
    assert hashes() - before == 10

    right = login(client, VICTIM, PASSWORD, ATTACKER_IP)
    assert right.status_code == 429 and THROTTLED.search(right.text)
    assert not right.wsgi_request.user.is_authenticated

    clock.advance(15 * 60)
    assert logged_in(login(client, VICTIM, PASSWORD, ATTACKER_IP))


def test_a_locked_account_still_logs_in_from_another_address(client):
    user_create(email=VICTIM)
    for n in range(60):
        login(client, VICTIM, f"guess {n}", ATTACKER_IP)
    assert login(client, VICTIM, PASSWORD, ATTACKER_IP).status_code == 429

    assert logged_in(login(client, VICTIM, PASSWORD, VICTIM_IP))


def test_a_successful_login_clears_its_own_failures(client):
    user_create(email=VICTIM)
    for n in range(9):
        assert login(client, VICTIM, f"typo {n}", VICTIM_IP).status_code == 200
    assert logged_in(login(client, VICTIM, PASSWORD, VICTIM_IP))
    client.logout()
    for n in range(9):
        assert login(client, VICTIM, f"typo again {n}", VICTIM_IP).status_code == 200
    assert logged_in(login(client, VICTIM, PASSWORD, VICTIM_IP))


def test_credential_stuffing_locks_the_address_not_the_accounts(client, hashes):
    user_create(email=VICTIM)
    before = hashes()
    answers = [login(client, f"user{n}@example.com", "Summer2024!", ATTACKER_IP) for n in range(64)]
    assert [a.status_code for a in answers[:30]] == [200] * 30
    assert [a.status_code for a in answers[30:]] == [429] * 34
    assert hashes() - before == 30, "a flood past the limit costs no hashing"

    assert login(client, VICTIM, PASSWORD, ATTACKER_IP).status_code == 429
    assert logged_in(login(client, VICTIM, PASSWORD, VICTIM_IP))


def test_the_per_account_limit_is_high_short_and_ends(client, clock):
    """Guesses from many addresses at one account lock it everywhere, but only for the rest of a
    five-minute window: nobody can keep the owner out for good."""
    user_create(email=VICTIM)
    for host in range(10):
        for n in range(10):
            assert login(client, VICTIM, f"guess {n}", f"192.0.2.{host + 1}").status_code == 200
    refused = login(client, VICTIM, PASSWORD, VICTIM_IP)
    assert refused.status_code == 429 and THROTTLED.search(refused.text)

    clock.advance(5 * 60)
    assert logged_in(login(client, VICTIM, PASSWORD, VICTIM_IP))


def test_spoofed_x_forwarded_for_neither_evades_the_limit_nor_locks_out_its_address(client):
    """Without configured proxies X-Forwarded-For is the client's own text: it changes nothing."""
    user_create(email=VICTIM)
    answers = [login(client, VICTIM, f"guess {n}", ATTACKER_IP, HTTP_X_FORWARDED_FOR=f"10.{n}.0.1") for n in range(20)]
    assert [a.status_code for a in answers[10:]] == [429] * 10, "a new forwarded address each time does not help"

    # Stuffing "from" the victim's address: the attacker's own address is what gets locked.
    for n in range(40):
        login(client, f"user{n}@example.com", "Summer2024!", ATTACKER_IP, HTTP_X_FORWARDED_FOR=VICTIM_IP)
    assert logged_in(login(client, VICTIM, PASSWORD, VICTIM_IP))


def test_ipv6_addresses_of_one_network_share_a_count(client):
    """One host usually gets a whole /64: a new address from it for each guess buys nothing."""
    answers = [login(client, f"user{n}@example.com", "Summer2024!", f"2001:db8:1:2::{n + 1:x}") for n in range(40)]
    assert [a.status_code for a in answers[30:]] == [429] * 10
    user_create(email=VICTIM)
    assert logged_in(login(client, VICTIM, PASSWORD, "2001:db8:1:3::1"))


def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(client, settings):
    settings.OPBEAT_TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.2"
    user_create(email=VICTIM)
    # The client may prepend anything; the proxy appends the address it saw, which is what counts.
    answers = [
        login(client, VICTIM, f"guess {n}", proxy, HTTP_X_FORWARDED_FOR=f"10.{n}.0.1, {ATTACKER_IP}") for n in range(20)
    ]
    assert [a.status_code for a in answers[:10]] == [200] * 10
    assert [a.status_code for a in answers[10:]] == [429] * 10
    # Everyone comes from the proxy's address, but another client is not locked out.
    assert logged_in(login(client, VICTIM, PASSWORD, proxy, HTTP_X_FORWARDED_FOR=VICTIM_IP))


def test_a_password_reset_clears_the_accounts_lock(client, mailoutbox):
    user_create(email=VICTIM)
    for n in range(12):
        login(client, VICTIM, f"forgot it {n}", VICTIM_IP)
    assert login(client, VICTIM, PASSWORD, VICTIM_IP).status_code == 429

    client.post("/password-reset/", {"email": VICTIM}, REMOTE_ADDR=VICTIM_IP)
    link = re.search(r"https?://[^/\s]+(/password-reset/\S+/\S+/)", mailoutbox[-1].body).group(1)
    set_password_url = client.get(link, REMOTE_ADDR=VICTIM_IP)["Location"]
    new = "a brand new phrase"
    done = client.post(set_password_url, {"new_password1": new, "new_password2": new}, REMOTE_ADDR=VICTIM_IP)
    assert done["Location"] == "/password-reset/done/"

    assert logged_in(login(client, VICTIM, new, VICTIM_IP))


def test_the_login_page_still_shows_the_form_when_throttled(client):
    for n in range(11):
        response = login(client, VICTIM, f"guess {n}", ATTACKER_IP)
    assert response.status_code == 429
    assert 'name="password"' in response.text and "Forgot your password?" in response.text


# --- Password-reset requests -----------------------------------------------------------------


def reset_request(client, email: str, ip: str):
    return client.post("/password-reset/", {"email": email}, REMOTE_ADDR=ip)


def test_reset_mails_to_one_address_are_limited_and_the_page_does_not_tell(client, mailoutbox, clock):
    user_create(email=VICTIM)
    answers = [reset_request(client, VICTIM, f"192.0.2.{n + 1}") for n in range(8)]
    assert {(a.status_code, a["Location"]) for a in answers} == {(302, "/password-reset/sent/")}
    assert len(mailoutbox) == 3
    assert all(mail.to == [VICTIM] for mail in mailoutbox)

    clock.advance(60 * 60)
    reset_request(client, VICTIM, VICTIM_IP)
    assert len(mailoutbox) == 4, "the limit ends with its window"


def test_reset_requests_from_one_address_are_limited(client, mailoutbox):
    for n in range(15):
        user_create(email=f"member{n}@example.com")
    answers = [reset_request(client, f"member{n}@example.com", ATTACKER_IP) for n in range(15)]
    assert {(a.status_code, a["Location"]) for a in answers} == {(302, "/password-reset/sent/")}
    assert len(mailoutbox) == 10
    assert User.objects.count() == 15

    # Another address is not affected.
    reset_request(client, "member14@example.com", VICTIM_IP)
    assert len(mailoutbox) == 11


# --- A flood against a real server -----------------------------------------------------------


def _form_token(session, url: str) -> str:
    page = session.get(url, timeout=30)
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)


def _login_from(base_url: str, source_ip: str, email: str, password: str) -> int:
    """A login from another loopback address (127.0.0.2 is as local as 127.0.0.1, but another
    client to the server): the status of the POST."""
    import http.client
    from urllib.parse import urlencode, urlsplit

    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30, source_address=(source_ip, 0))
    connection.request("GET", "/login/")
    page = connection.getresponse()
    body = page.read().decode()
    cookie = page.getheader("Set-Cookie").split(";", 1)[0]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1)
    form = urlencode({"csrfmiddlewaretoken": token, "username": email, "password": password})
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie, "Referer": f"{base_url}/login/"}
    connection.request("POST", "/login/", body=form, headers=headers)
    status = connection.getresponse().status
    connection.close()
    return status


@pytest.mark.e2e
def test_a_parallel_flood_of_logins_is_refused_without_hashing(redis_url, tmp_path):
    import concurrent.futures
    import sys
    import time

    import requests
    from django.conf import settings as django_settings

    from tests.e2e import stack

    var_dir, log_dir = tmp_path / "var", tmp_path / "logs"
    var_dir.mkdir()
    log_dir.mkdir()
    port = stack.port_free()
    base_url = f"http://127.0.0.1:{port}"
    env = stack.child_env(var_dir, REDIS_URL=redis_url, BASE_URL=base_url)
    env["DJANGO_SETTINGS_MODULE"] = "tests.security.flood_settings"
    stack.manage("migrate", "--noinput", env=env)
    stack.manage(
        "opbeat_create_app", "--email", VICTIM, "--password", PASSWORD, "--org", "Flood", "--app", "web", env=env
    )
    hashes = var_dir / "password-hashes"
    server = stack.Process.start(
        "gunicorn",
        [
            sys.executable, "-m", "gunicorn", "opbeat_server.wsgi:application", "--bind", f"127.0.0.1:{port}",
            "--workers", "2", "-k", "gthread", "--threads", "16", "--graceful-timeout", "5",
        ],
        env=env,
        log_dir=log_dir,
    )  # fmt: skip
    try:
        stack.wait_until(
            lambda: server.assert_running() or stack.port_listening(port),
            timeout=stack.START_TIMEOUT,
            what="gunicorn",
            on_timeout=server.log_tail,
        )
        session = requests.Session()
        token = _form_token(session, f"{base_url}/login/")
        before = hashes.stat().st_size
        # The server counts in fixed windows of the real clock; a flood straddling a boundary is
        # counted in two windows (up to twice the limit, by design). Start clear of one.
        allowed, window = django_settings.OPBEAT_AUTH_LIMITS["login_address"]
        to_boundary = window - time.time() % window
        if to_boundary < 30:
            time.sleep(to_boundary + 1)

        def attempt(n: int) -> int:
            form = {"csrfmiddlewaretoken": token, "username": f"user{n}@example.com", "password": "Summer2024!"}
            # A fresh X-Forwarded-For each time: it must not buy a fresh count.
            headers = {"X-Forwarded-For": f"10.0.{n}.1", "Referer": f"{base_url}/login/"}
            return session.post(f"{base_url}/login/", data=form, headers=headers, timeout=60).status_code

        with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
            statuses = list(pool.map(attempt, range(64)))

        assert statuses.count(200) == allowed and statuses.count(429) == 64 - allowed, statuses
        # The hasher ran once per admitted attempt, however the 64 raced for the counters.
        assert hashes.stat().st_size - before == allowed
        # The flooding address is locked, for the right password too; another client is not.
        assert _login_from(base_url, "127.0.0.1", VICTIM, PASSWORD) == 429
        assert _login_from(base_url, "127.0.0.2", VICTIM, PASSWORD) == 302
        server.assert_running()
    finally:
        server.stop()
