"""A new app server process does its one-time work before its first resident, not during the first request.

A gunicorn worker that has just started (at boot, after a deploy's reload, or replaced by --max-requests) would
otherwise spend its first booking attempt, some 0.3 s of CPU, on things done once per process: loading the
templates, Babel's locale data for the date formats, compiling the booking path's SQL into the engine's cache,
reading each room the residents book into the kept rooms (services/rules.cached_room_with_rules), and the
catalog the search keeps (public/search.catalog). At 09:00 on the day a month opens, with residents queued
behind it, that is the worst time to pay it.

`warm(app)` does that work with reads only: every statement runs with ids no row has, or reads the rooms as the
booking path would, and the transaction is rolled back. It is called by deploy/gunicorn.conf.py's
post_worker_init hook, in each worker before it accepts a request. A database that does not answer leaves the
worker cold, never down: the first requests then pay as before (logged as a warning).
"""
import logging
import time
from datetime import UTC, date, datetime
from types import SimpleNamespace

from babel.dates import format_date, format_time
from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from .extensions import db

log = logging.getLogger("reservations.warmup")
NO_ID = 0  # no row has it: ids start at 1


def warm(app: Flask) -> dict:
    """The process's one-time work, done now; returns what it did (counts, and CPU seconds) for the log."""
    started = time.process_time()
    done = {"templates": _templates(app)}
    for language in app.config["LANGUAGES"]:  # the formats the pages use (filters.py, the |date filter)
        format_date(date.today(), "full", locale=language)
        format_time(datetime.now(UTC), "HH:mm", locale=language)
    with app.app_context():
        try:
            done["rooms"] = _rooms_and_statements()
        except SQLAlchemyError as exc:
            log.warning("warm-up without the database (%s): the first requests read and compile instead",
                        str(exc).strip().splitlines()[0])
            done["rooms"] = None
        finally:
            db.session.rollback()
            db.session.remove()
    done["cpu_s"] = round(time.process_time() - started, 3)
    log.info("warm-up done: %s", done)
    return done


def _templates(app: Flask) -> int:
    names = app.jinja_env.list_templates(extensions=("html", "txt"))
    for name in names:
        app.jinja_env.get_template(name)  # from TEMPLATE_BYTECODE_DIR once any process has compiled it
    return len(names)


def _rooms_and_statements() -> int:
    from .bookings.routes import review_facts
    from .models import Room, User
    from .public import search
    from .services import booking, rules
    from .timeutil import business_date, now_utc

    now = now_utc()
    today = business_date(now)
    db.session.get(User, NO_ID)  # the user loader's statement
    token = rules.catalog_token()
    review_facts(NO_ID, NO_ID, today, now)  # the review page's one question
    booking.standing(SimpleNamespace(id=NO_ID), NO_ID, rules.Slot(today, now, now), now)  # the reserve's
    room_ids = db.session.scalars(select(Room.id).where(Room.active).order_by(Room.id)
                                  .limit(rules.KEPT_ROOMS_MAX)).all()
    for room_id in room_ids:
        rules.cached_room_with_rules(room_id, token)
    search.catalog()
    return len(room_ids)
