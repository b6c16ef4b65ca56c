"""Framework integrations, one module per framework, each importing its framework behind a guard:
a missing framework raises ``DidNotEnable`` with a one-line reason, never an ImportError deep
inside the host app. This package itself imports no framework.
"""


class DidNotEnable(Exception):
    """An integration cannot run here (its framework is missing or too old)."""
