"""Which units of work write to the database, so that on SQLite only those take the write lock.

SQLite has one writer at a time. A transaction that will write begins
IMMEDIATE, taking the write lock at BEGIN, so that a booking's overlap check
and its insert are one step. A page view only reads: it begins DEFERRED and,
in WAL mode, never waits on a writer.

What writes: POST, PUT, PATCH and DELETE requests, and everything outside a
request (CLI commands, jobs, the test's own code). GET, HEAD and OPTIONS
requests read, unless their view is marked with `@writes` (the pay page
creates the provider intent and commits it).

A write inside a read transaction is the bug a forgotten `@writes` makes. In
tests (app.testing) it raises WriteInReadTransaction at the statement, so
the page tests catch the missing mark. Elsewhere it is logged and let
through: SQLite upgrades the transaction to a writer, and in WAL mode refuses
the upgrade ("database is locked") if another writer committed since our
reads began, so it fails rather than act on a stale read.
"""
import re
from collections.abc import Callable

from flask import current_app, has_app_context, has_request_context, request
from sqlalchemy import event
from sqlalchemy.orm import Session

READ, WRITE = "read", "write"
MODE_KEY = "db_mode"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_WRITE_STATEMENT = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER)\b", re.IGNORECASE)


class WriteInReadTransaction(RuntimeError):
    """A statement that writes ran in a transaction begun read-only (a GET view without @writes)."""


def writes(view: Callable) -> Callable:
    """Mark a GET view that writes to the database, so that its transaction takes the write lock at BEGIN."""
    view.writes_to_database = True
    return view


def unit_of_work_mode() -> str:
    """READ for a page view, WRITE for anything else (see the module docstring)."""
    if not has_request_context() or request.method not in READ_METHODS:
        return WRITE
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    return WRITE if getattr(view, "writes_to_database", False) else READ


def is_write(statement: str, context) -> bool:
    if context is not None and (context.isinsert or context.isupdate or context.isdelete):
        return True
    return bool(_WRITE_STATEMENT.match(statement))


def refuse_writes_in_reads(conn, cursor, statement, parameters, context, executemany) -> None:
    """before_cursor_execute: a write in a read-only transaction fails in tests and is logged elsewhere."""
    if conn.info.get(MODE_KEY) != READ or not is_write(statement, context):
        return
    where = f"{request.method} {request.path} ({request.endpoint})" if has_request_context() else "outside a request"
    message = (f"a write in a read-only transaction, {where}: mark the view with "
               f"reservations.db_mode.writes: {statement.split(chr(10))[0][:120]}")
    if not has_app_context() or current_app.testing:
        raise WriteInReadTransaction(message)
    current_app.logger.error(message)


def end_read_transaction(_exc=None) -> None:
    """At the end of a request, end its read-only transaction.

    In production the session goes with the app context anyway. Tests keep one
    app context for the whole test, and the test's own code after a request
    must not go on inside the request's read-only transaction.
    """
    from .extensions import db

    session = db.session()
    if session.info.get(MODE_KEY) == READ:
        session.rollback()


@event.listens_for(Session, "after_begin")
def _remember_mode(session: Session, transaction, connection) -> None:
    session.info[MODE_KEY] = connection.info.get(MODE_KEY)


@event.listens_for(Session, "after_transaction_end")
def _forget_mode(session: Session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop(MODE_KEY, None)
