"""Side effects (mail) that must happen only once the change they report is committed."""
from collections.abc import Callable

from flask import current_app
from sqlalchemy import event
from sqlalchemy.orm import Session

from .extensions import db

_KEY = "after_commit"


def after_commit(fn: Callable[[], None]) -> None:
    """Run `fn` after the current transaction commits; drop it if it rolls back.

    `fn` runs while the session is closing its transaction, so it must not
    touch the database: read what it needs before (e.g. render the mail) and
    only send here.
    """
    db.session().info.setdefault(_KEY, []).append(fn)


@event.listens_for(Session, "after_commit")
def _run(session: Session) -> None:
    for fn in session.info.pop(_KEY, []):
        try:
            fn()
        except Exception:  # a failed mail never undoes a committed booking
            current_app.logger.exception("after-commit action failed")


@event.listens_for(Session, "after_rollback")
def _drop(session: Session) -> None:
    session.info.pop(_KEY, None)
