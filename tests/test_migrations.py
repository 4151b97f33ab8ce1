"""The schema is built only by migrations, and the models never drift from them."""
import uuid

import psycopg
import pytest
from sqlalchemy import inspect

from reservations import create_app
from reservations.extensions import db
from tests.conftest import PG_ADMIN_URL, _pg_url


@pytest.fixture
def empty_database(backend, tmp_path):
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    name = f"reservations_migr_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _pg_url(name).replace("postgresql://", "postgresql+psycopg://")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_builds_an_empty_database_and_check_reports_no_drift(empty_database):
    app = create_app({"SQLALCHEMY_DATABASE_URI": empty_database, "TESTING": True})
    runner = app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    result = runner.invoke(args=["db", "check"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        tables = set(inspect(db.engine).get_table_names())
        assert {"bookings", "rooms", "divisions", "users", "audit_entries"} <= tables
    # And back down to nothing, and up again.
    assert runner.invoke(args=["db", "downgrade", "base"]).exit_code == 0
    with app.app_context():
        assert "bookings" not in inspect(db.engine).get_table_names()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    with app.app_context():
        db.engine.dispose()
