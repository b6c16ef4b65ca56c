"""SQL statements as span signatures and sendable text (``opbeat_agent.sql``)."""

from __future__ import annotations

from opbeat_agent import sql
from opbeat_agent.sql import sql_describe, sql_signature, sql_strip


def test_signatures_name_what_a_statement_does_and_to_what():
    assert sql_signature("SELECT id FROM orders WHERE id = 1") == "SELECT FROM orders"
    assert sql_signature('select "orders"."id" from "public"."orders"') == "SELECT FROM public.orders"
    assert sql_signature("INSERT INTO payments (id) VALUES (1)") == "INSERT INTO payments"
    assert sql_signature("UPDATE ONLY users SET name = 'x'") == "UPDATE users"
    assert sql_signature("DELETE FROM sessions WHERE expires < now()") == "DELETE FROM sessions"
    assert sql_signature("WITH recent AS (SELECT 1) SELECT * FROM recent JOIN orders ON true") == "WITH ... FROM recent"
    assert sql_signature("/* app */ -- note\n  VACUUM") == "VACUUM"
    assert sql_signature("   ") == ""


def test_literals_never_leave_the_process():
    assert sql_strip("SELECT * FROM t WHERE email = 'a@b.c' AND n > 42 AND t2.c1 = %s") == (
        "SELECT * FROM t WHERE email = ? AND n > ? AND t2.c1 = %s"
    )
    assert sql_strip("SELECT 'it''s'") == "SELECT ?"


def test_describe_matches_and_its_table_stays_bounded():
    sql._DESCRIBED.clear()
    statement = "SELECT id FROM orders WHERE total > 15"
    assert sql_describe(statement) == (sql_signature(statement), {"sql": sql_strip(statement)})
    assert sql_describe(statement) is sql_describe(statement)  # looked up, not recomputed
    # Statements with values typed inline never repeat: the table is cleared, not grown.
    for n in range(sql._DESCRIBED_MAX * 2 + 5):
        assert sql_describe(f"SELECT * FROM t WHERE id = {n}")[1] == {"sql": "SELECT * FROM t WHERE id = ?"}
    assert len(sql._DESCRIBED) <= sql._DESCRIBED_MAX


def test_a_statement_cut_inside_a_literal_keeps_none_of_it():
    statement = "INSERT INTO notes (body) VALUES ('" + "x" * 20_000 + "')"
    assert sql_strip(statement) == "INSERT INTO notes (body) VALUES (?"


def test_identifiers_with_digits_and_placeholders_are_kept():
    statement = 'SELECT "t1"."col2", t3.c4, a$b FROM "t1" WHERE x = $1 AND y = :p2 AND z = %(z3)s AND w = ?'
    assert sql_strip(statement) == statement
