"""Limits on logins, sign-ups and password-reset mails: whether an attempt may go on, and until when not.

One rule for the login and password-reset views, on the fixed windows of ``accounts.throttle`` in
the cache every web process shares (Redis in production). That is chosen over django-axes, which
would add its own tables, middleware and authentication backend for what a few counters here do,
and would count failures after the hasher ran rather than attempts before it. The numbers are in
``settings.OPBEAT_AUTH_LIMITS``.

Three counters per login, so that the throttle cannot be turned against the account's owner:

- one account from one address: locks that pair quickly (a guesser at one account);
- one address, whichever accounts: locks that address (credential stuffing);
- one account from every address: high and short, so a distributed guesser is slowed but no one
  keeps the owner out longer than one short window.

Every attempt that will reach the password hasher is counted before it runs, with an atomic
increment: concurrent attempts cannot slip past a limit together, and refused ones cost no
hashing. Refused attempts are not counted, so hammering a locked pair does not lock its address.
Every lock ends with its window.
"""

from __future__ import annotations


from django.conf import settings

from opbeat_server.client_ip import client_address_key

from .throttle import Limit, throttle_check, throttle_hit, throttle_reset, wait_text


def _limit(name: str) -> Limit:
    count, seconds = settings.OPBEAT_AUTH_LIMITS[name]
    return Limit(count=count, seconds=seconds)


def email_normalize(email: str) -> str:
    """The key an email is counted under: as the forms store and compare it."""
    return (email or "").strip().lower()


def _login_counters(*, email: str, ip: str) -> list[tuple[str, Limit]]:
    email = email_normalize(email)
    address = client_address_key(ip)
    return [
        (f"login:address:{address}", _limit("login_address")),
        (f"login:account-address:{email}:{address}", _limit("login_account_address")),
        (f"login:account:{email}", _limit("login_account")),
    ]


def login_attempt_admit(*, email: str, ip: str) -> int:
    """Count a login attempt that is about to check a password. 0: go on; otherwise the seconds
    until the attempt would be allowed (nothing is counted then)."""
    counters = _login_counters(email=email, ip=ip)
    wait = max(throttle_check(key, limit) for key, limit in counters)
    if wait:
        return wait
    # Two attempts may both pass the check above; the increments decide which one is over.
    return max([throttle_hit(key, limit) for key, limit in counters])


def login_succeeded(*, email: str, ip: str) -> None:
    """The right password from this address: its earlier typos there are forgiven. The address's
    and the account's overall counts stay, so logging in to one's own account between guesses
    at others, or at this one from elsewhere, buys nothing."""
    key, limit = _login_counters(email=email, ip=ip)[1]
    throttle_reset(key, limit)


def login_account_unlock(*, email: str, ip: str) -> None:
    """After a password reset: the mailbox proved the owner, so the account's lock and this
    address's lock on it are cleared (other addresses' locks on it stay)."""
    for key, limit in _login_counters(email=email, ip=ip)[1:]:
        throttle_reset(key, limit)


def login_throttled_message(seconds: int) -> str:
    return f"Too many failed attempts. Try again in {wait_text(seconds)}."


def password_reset_admit(*, email: str, ip: str) -> bool:
    """Whether a reset mail may be sent for this request. A request refused for its client address
    is not counted against the target email."""
    if throttle_hit(f"password-reset:address:{client_address_key(ip)}", _limit("password_reset_address")):
        return False
    return throttle_hit(f"password-reset:email:{email_normalize(email)}", _limit("password_reset_email")) == 0


def signup_admit(*, ip: str) -> int:
    """Count a sign-up attempt from this client address (it runs the hasher and mails a link).
    0: go on; otherwise the seconds until another is allowed."""
    return throttle_hit(f"signup:address:{client_address_key(ip)}", _limit("signup_address"))


def signup_throttled_message(seconds: int) -> str:
    return f"Too many sign-ups from your address. Try again in {wait_text(seconds)}."
