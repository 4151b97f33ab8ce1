"""A pooled PostgreSQL connection is asked whether it still lives only when it has heard from the server.

pool_pre_ping sends `SELECT 1` on every checkout: one round trip in each request, a sixth of a losing
reserve's. Yet a connection idle in the pool hears nothing from PostgreSQL unless the server is ending it: a
restart or a crash (each backend sends its FATAL message, or the kernel closes the socket), an operator's
pg_terminate_backend, idle_session_timeout. So at checkout the socket is polled without waiting (no round
trip): a connection with nothing to read is handed out as it is; one with something to read is pinged, and if
the ping fails the pool is told it is gone (DisconnectionError), drops it and connects anew, up to three times,
before the request runs (SQLAlchemy's "pessimistic" disconnect handling, with the test made cheap).

What this cannot see, no more than a ping could prevent: a server that vanishes without a word (its host
powered off, a network cut) until the socket times out, and a connection that dies after its checkout. Those
fail the one request that meets them with the outage page (views.database_unavailable), and the pool
invalidates the dead connection for the next.
"""
import select

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError


def install(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        return  # SQLite has no server to go away

    @event.listens_for(engine, "checkout")
    def _alive_or_replaced(dbapi_connection, _record, _proxy):
        if dbapi_connection.closed:
            raise DisconnectionError("the connection was closed while in the pool")
        try:
            heard, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
        except (OSError, ValueError) as exc:
            raise DisconnectionError("the connection's socket is gone") from exc
        if heard:
            try:
                engine.dialect.do_ping(dbapi_connection)
            except Exception as exc:
                raise DisconnectionError("the server ended the connection while it was in the pool") from exc
