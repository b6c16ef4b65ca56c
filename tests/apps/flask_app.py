"""An example Flask app using the agent the way a user would: ``app.config["OPBEAT"]`` and
``Opbeat(app)``. Tests build it with ``create_app(...)`` and drive it with Flask's test client."""

from __future__ import annotations

import logging
import sqlite3

from flask import Flask, abort, jsonify, render_template, request

import opbeat_agent
from opbeat_agent import OpbeatHandler
from opbeat_agent.integrations.flask import Opbeat

log = logging.getLogger("flask_app.payments")


def create_app(**opbeat: object) -> Flask:
    app = Flask(__name__)
    app.config["OPBEAT"] = opbeat
    Opbeat(app)
    handler = OpbeatHandler(app.extensions["opbeat_agent"].client, level=logging.WARNING)
    log.handlers[:] = [handler]
    log.propagate = False

    @app.get("/")
    def index():
        return "ok"

    @app.get("/error")
    def error():
        divisor = 0
        secret_password = "hunter2"  # noqa: F841 - to see local-variable capture and scrubbing
        return str(1 / divisor)

    @app.post("/checkout")
    def checkout():
        quantity = int(request.form["qty"])
        raise RuntimeError(f"card declined for {quantity} items")

    @app.post("/api/orders")
    def orders():
        payload = request.get_json()
        raise KeyError(payload["missing"])

    @app.get("/missing")
    def missing():
        abort(404)

    @app.get("/handled")
    def handled():
        try:
            int("not a number")
        except ValueError:
            opbeat_agent.capture_exception()
        return jsonify(status="handled")

    @app.get("/pay/<order_id>")
    def pay(order_id):
        log.warning("Payment %s failed", order_id)
        return "logged"

    @app.get("/report/<int:limit>")
    def report(limit):
        # Three queries and a template: the shape of the overhead benchmark's endpoint.
        with sqlite3.connect(":memory:") as db:
            db.execute("CREATE TABLE orders (id INTEGER, total INTEGER)")
            db.executemany("INSERT INTO orders VALUES (?, ?)", [(n, n * 10) for n in range(5)])
            rows = db.execute("SELECT id, total FROM orders WHERE total > 15 LIMIT ?", (limit,)).fetchall()
        return render_template("report.html", rows=rows)

    return app
