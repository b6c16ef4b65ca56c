"""Signals sent by ``accounts.services`` for apps that keep per-member state of their own.

Those apps depend on accounts, never the other way round, so they listen here (connected in their
``AppConfig.ready``) instead of being called.
"""

from django.dispatch import Signal

# Sent inside the transaction that deletes the membership, with ``organization`` and ``user``.
member_removed = Signal()
