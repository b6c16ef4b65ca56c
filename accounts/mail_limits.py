"""How much mail a person can make this server send to addresses they type: invites, and the
links that verify an account's address or a commit-email alias.

Every such mail names a recipient the sender chose and text the sender partly wrote (an
organization name), so without limits any sign-up could use us to mail anyone. The limits, all
counted with ``accounts.throttle`` (fixed windows in the shared cache), are in this one table:

- invites: 1 mail per organization and address per 10 minutes and 3 per day; 10 per address per
  day across all organizations; 50 per organization and 100 per inviting user per day (an
  organization costs nothing to create, so the per-user limit is what caps one person);
- verification links (an account's own address, or an alias): 1 per account and address per
  minute and 5 per day; 10 per address per day whoever asks; alias links also 20 per requesting
  user per day.

The limits per (organization or account, address) are the ones a person meets in practice, and
no stranger can spend them; the wider per-address limits are what a stranger spraying mail from
many organizations or accounts meets, and they can delay someone else's invite or link to that
address by a day at most: the price of not mailing a person without end.

Nothing here sends mail; callers ask ``mail_limit_hit`` before sending and send nothing when it
raises.
"""

from __future__ import annotations

from .throttle import Limit, throttle_check, throttle_hit, wait_text

MINUTE, HOUR, DAY = 60, 3600, 86400

INVITE_PER_ORGANIZATION_ADDRESS = (Limit(1, 10 * MINUTE), Limit(3, DAY))
INVITE_PER_ADDRESS = (Limit(10, DAY),)
INVITE_PER_ORGANIZATION = (Limit(50, DAY),)
INVITE_PER_SENDER = (Limit(100, DAY),)
VERIFICATION_PER_ACCOUNT_ADDRESS = (Limit(1, MINUTE), Limit(5, DAY))
VERIFICATION_PER_ADDRESS = (Limit(10, DAY),)
ALIAS_PER_SENDER = (Limit(20, DAY),)


class MailLimited(Exception):
    """Over a limit: nothing was sent. ``retry_after`` is in seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"mail limit reached, retry after {retry_after} s")
        self.retry_after = retry_after

    def wait_text(self) -> str:
        return wait_text(self.retry_after)


def mail_limit_hit(checks: list[tuple[str, tuple[Limit, ...]]]) -> None:
    """Count one mail against every (key, limits) pair, or raise ``MailLimited`` with the longest
    wait. All limits are checked before any is counted, so a mail refused by one limit does not
    use up the others (an owner retrying one address does not spend the organization's day)."""
    pairs = [(key, limit) for key, limits in checks for limit in limits]
    wait = max((throttle_check(key, limit) for key, limit in pairs), default=0)
    if wait:
        raise MailLimited(wait)
    # Counted after the check: two concurrent requests may both pass it, and then the counters
    # (atomic in the cache) refuse the one that went over.
    wait = max((throttle_hit(key, limit) for key, limit in pairs), default=0)
    if wait:
        raise MailLimited(wait)


def invite_mail_limit_hit(*, organization_public_id: str, email: str, sender_id: int) -> None:
    # The organization's public id, not its primary key: a database made afresh (tests, a
    # reinstall) reuses keys while the counters live on in Redis.
    mail_limit_hit(
        [
            (f"mail:invite:org-to:{organization_public_id}:{email}", INVITE_PER_ORGANIZATION_ADDRESS),
            (f"mail:invite:to:{email}", INVITE_PER_ADDRESS),
            (f"mail:invite:org:{organization_public_id}", INVITE_PER_ORGANIZATION),
            (f"mail:invite:by:{sender_id}", INVITE_PER_SENDER),
        ]
    )


def verification_mail_limit_hit(*, email: str, account_id: int, alias: bool) -> None:
    """A link to verify ``email``: the account's own address, or (``alias``) another address the
    account says it commits with."""
    checks = [
        (f"mail:verify:by-to:{account_id}:{email}", VERIFICATION_PER_ACCOUNT_ADDRESS),
        (f"mail:verify:to:{email}", VERIFICATION_PER_ADDRESS),
    ]
    if alias:
        checks.append((f"mail:alias:by:{account_id}", ALIAS_PER_SENDER))
    mail_limit_hit(checks)
