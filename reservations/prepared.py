"""On PostgreSQL, a transaction that only read ends with COMMIT, so that the connection keeps the statements the
server has prepared.

psycopg 3 prepares a statement on the server once it has run 5 times on a connection (prepare_threshold):
after that PostgreSQL binds and executes it without parsing and planning it again. But psycopg forgets every
prepared statement at each `rollback()` (and sends DEALLOCATE ALL), since a rollback may have undone the
objects they refer to. Every request ended in a rollback: Flask-SQLAlchemy's session ends so, and so does the
pool's reset when the connection comes back. So no statement ever reached 5, and PostgreSQL parsed and planned
each one every time. For the review page's one statement of four subqueries that was about 1 ms of planning for
0.1 ms of execution.

A transaction that ran only SELECTs changed nothing, and COMMIT ends it as ROLLBACK would: its snapshot and its
locks (the advisory locks of a hold, FOR UPDATE rows) go with it. So this engine's rollback is a COMMIT when
every statement of the transaction began with SELECT and none was an INSERT, UPDATE or DELETE by SQLAlchemy's
account. Anything else is a write as far as this is concerned, and is rolled back: a SAVEPOINT, a WITH, a
text() statement that is not a SELECT, a failed statement (the transaction is then INERROR, not INTRANS). A
COMMIT that fails (the connection gone) fails as the rollback would have: SQLAlchemy handles an error of the
rollback, at the session's end or the pool's reset, by invalidating the connection.

Statements that run outside SQLAlchemy's events (a raw DBAPI cursor) are not seen; the app has none on
PostgreSQL, and a transaction begun that way is never marked read-only, so it is rolled back.

What follows from keeping prepared statements, and is already true of psycopg's defaults:
- After a migration that changes a column's type, a prepared statement on a connection opened before fails
  ("cached plan must not change result type"). Deploys migrate and then reload the app servers
  (deploy/README.md), whose new workers open new connections.
- Through pgbouncer in transaction mode: 1.21 or later with max_prepared_statements
  (deploy/postgresql/reservations.conf).
- After 5 runs PostgreSQL may plan a statement once for any parameters (a generic plan), when it judges that
  plan no worse than the custom ones it made so far.
"""
import re

from psycopg.pq import TransactionStatus
from sqlalchemy import event
from sqlalchemy.engine import Engine

from . import db_mode

_READS_ONLY = "_reservations_reads_only"  # on the psycopg connection: True while its transaction only read
_SELECT = re.compile(r"\s*SELECT\b", re.IGNORECASE)


def _raw(connection):
    """The psycopg connection of a pool's proxy, or the connection itself."""
    return getattr(connection, "dbapi_connection", connection)


def is_read(statement: str, context) -> bool:
    """A statement that cannot have written: a SELECT that SQLAlchemy did not compile as DML (db_mode.is_write)."""
    return bool(_SELECT.match(statement)) and not db_mode.is_write(statement, context)


def install(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        return  # pysqlite forgets nothing at a rollback
    dialect = engine.dialect
    rollback, commit = dialect.do_rollback, dialect.do_commit

    @event.listens_for(engine, "begin")
    def _begin(conn):
        setattr(_raw(conn.connection), _READS_ONLY, True)

    @event.listens_for(engine, "before_cursor_execute")
    def _note(conn, cursor, statement, parameters, context, executemany):
        if not is_read(statement, context):
            setattr(cursor.connection, _READS_ONLY, False)

    def do_rollback(dbapi_connection) -> None:
        raw = _raw(dbapi_connection)
        reads_only = getattr(raw, _READS_ONLY, False) and raw.info.transaction_status == TransactionStatus.INTRANS
        setattr(raw, _READS_ONLY, False)
        (commit if reads_only else rollback)(dbapi_connection)

    def do_commit(dbapi_connection) -> None:
        setattr(_raw(dbapi_connection), _READS_ONLY, False)
        commit(dbapi_connection)

    dialect.do_rollback, dialect.do_commit = do_rollback, do_commit
