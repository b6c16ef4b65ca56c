"""The benchmark's Flask app: ``GET /report/<int:customer_id>`` runs three queries and renders a
Jinja2 template. ``gunicorn bench.overhead_apps.flask_app:app`` with ``BENCH_AGENT`` set."""

from __future__ import annotations

import sqlite3
import threading

from flask import Flask, render_template

from . import common

app = Flask(__name__)
_local = threading.local()

if common.AGENT == "opbeat":
    from opbeat_agent.integrations.flask import Opbeat

    app.config["OPBEAT"] = common.opbeat_config()
    Opbeat(app)
elif common.AGENT == "sentry":
    common.sentry_init()
elif common.AGENT == "elastic":
    from elasticapm.contrib.flask import ElasticAPM

    app.config["ELASTIC_APM"] = common.elastic_config()
    ElasticAPM(app)


def _db() -> sqlite3.Connection:
    # Opened on the first request, after the agent is set up (as an app's pool would be).
    db = getattr(_local, "db", None)
    if db is None:
        db = _local.db = sqlite3.connect(common.DATABASE, check_same_thread=False)
    return db


@app.get("/report/<int:customer_id>")
def report(customer_id: int):
    return render_template("report.html", **common.report_rows(_db().execute, customer_id % 100))
