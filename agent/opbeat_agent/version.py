"""The agent's version: sent in User-Agent, read by the packaging metadata check in the tests."""

__version__ = "0.1.0"
