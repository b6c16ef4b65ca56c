"""The distribution: importing it pulls in no framework, a missing framework is a clear
DidNotEnable, and the wheel builds with the package inside."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

AGENT_DIR = Path(__file__).resolve().parents[2] / "agent"


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(AGENT_DIR)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_importing_the_agent_imports_no_framework():
    result = _python(
        "import sys, json, opbeat_agent, opbeat_agent.integrations, opbeat_agent.integrations.wsgi\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))
    assert "opbeat_agent" in loaded
    assert not loaded & {"django", "flask", "werkzeug", "jinja2", "celery", "requests", "urllib3", "redis", "wrapt"}


def test_a_missing_framework_is_did_not_enable():
    result = _python(
        "import sys\n"
        "sys.modules['flask'] = None\n"  # what an absent package looks like to the import system
        "sys.modules['django'] = None\n"
        "sys.modules['celery'] = None\n"
        "from opbeat_agent import DidNotEnable\n"
        "for name in ('flask', 'django', 'celery'):\n"
        "    try:\n"
        "        __import__('opbeat_agent.integrations.' + name)\n"
        "    except DidNotEnable as exc:\n"
        "        print(exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Flask is not installed: pip install opbeat-agent[flask]",
        "Django is not installed: pip install opbeat-agent[django]",
        "Celery is not installed: pip install celery",
    ]


def test_the_distribution_declares_its_package_and_extras():
    # Building a wheel needs setuptools>=68 from the index (build isolation); the suite must run
    # offline, so this reads what the build reads: the metadata and the package list it finds.
    import tomllib

    from setuptools import find_packages

    project = tomllib.loads((AGENT_DIR / "pyproject.toml").read_text())["project"]
    assert project["name"] == "opbeat-agent"
    assert project["dependencies"] == ["wrapt>=1.14"]
    assert set(project["optional-dependencies"]) == {"django", "flask"}
    packages = set(find_packages(str(AGENT_DIR), include=["opbeat_agent*"]))
    assert packages == {
        "opbeat_agent",
        "opbeat_agent.integrations",
        "opbeat_agent.integrations.django",
        "opbeat_agent.integrations.django.management",
        "opbeat_agent.integrations.django.management.commands",
        "opbeat_agent.instrumentation",
    }
    from opbeat_agent import __version__

    assert project["version"] == __version__
