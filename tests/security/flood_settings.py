"""Settings for the login-flood test's server: the project's, with a hasher that counts its runs
in var/password-hashes (tests/security/hashers.py), so the test can see how often it ran."""

from opbeat_server.settings import *  # noqa: F403

PASSWORD_HASHERS = ["tests.security.hashers.FileCountingHasher"]
