"""Password hashers that count how often the hasher runs, so tests can assert that a flood of
logins past a limit costs no hashing. MD5 underneath: fast, and these only ever exist in tests."""

from __future__ import annotations

import os

from django.conf import settings
from django.contrib.auth.hashers import MD5PasswordHasher


# Only encode() counts: verify() hashes by calling encode(), and so does the check Django runs
# for an unknown email (so that it takes as long as a known one).


class CountingHasher(MD5PasswordHasher):
    """Counts in this process (tests driving Django's test client)."""

    algorithm = "counting_md5"
    calls = 0

    def encode(self, password, salt):
        type(self).calls += 1
        return super().encode(password, salt)


class FileCountingHasher(MD5PasswordHasher):
    """Counts across server processes: one byte appended to var/password-hashes per run
    (O_APPEND writes of one byte do not interleave)."""

    algorithm = "file_counting_md5"

    def _count(self) -> None:
        fd = os.open(settings.VAR_DIR / "password-hashes", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, b".")
        finally:
            os.close(fd)

    def encode(self, password, salt):
        self._count()
        return super().encode(password, salt)
