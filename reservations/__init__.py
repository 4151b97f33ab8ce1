"""reservations: public facility reservations with cashless checkout."""
from pathlib import Path

from flask import Flask, current_app, has_request_context, request, session
from flask_login import current_user
from jinja2 import FileSystemBytecodeCache
from sqlalchemy import event

from . import i18n, widgets
from .extensions import babel, csrf, db, limiter, login_manager, migrate
from .i18n import lazy_gettext as _l


def create_app(test_config: dict | None = None) -> Flask:
    import config as settings  # beside wsgi.py, not in the package

    app = Flask(__name__, instance_relative_config=True, template_folder="../templates")
    app.config.from_object(settings.Config)
    app.config.update(settings.mode_settings(settings.app_env(test_config)))
    if test_config:
        app.config.update(test_config)
    # Before anything opens a database or a port: production never runs on development secrets.
    settings.check_settings(app.config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    from . import models  # noqa: F401  (registers every table for migrations)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(app.root_path).parent / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    login_manager.init_app(app)
    limiter.init_app(app)  # the limits themselves: reservations/limits.py
    # Flask-Limiter remembers "the storage is down, count in memory" on the extension object, which every app
    # of the process shares, and init_app does not forget it: a new app starts with its own new storage alive.
    limiter._storage_dead = False
    login_manager.login_view = "account.login"
    login_manager.login_message = _l("Please log in to see this page.")
    login_manager.login_message_category = "info"
    # Flask-Login's "basic" protection writes `_fresh` into every anonymous
    # session it meets, so each page and even a favicon 404 re-sent the whole
    # cookie session; a response that started before the language switch then
    # overwrote it with the old language. We never ask for fresh logins, so it
    # protected nothing here.
    login_manager.session_protection = None
    babel.init_app(app, locale_selector=select_locale, timezone_selector=lambda: app.config["TIMEZONE"])
    # Flask-WTF reads WTForms' own catalog from disk in every request that builds a form; it takes the
    # request's `wtforms_translations` when set, so give it one that reads each language once per process.
    app.before_request(lambda: setattr(request, "wtforms_translations", i18n.WTFORMS_TRANSLATIONS))
    if app.config["TEMPLATE_BYTECODE_DIR"]:
        app.jinja_env.bytecode_cache = TemplateBytecode(app.config["TEMPLATE_BYTECODE_DIR"])
    # Flask-Babel's template callables look the locale and its catalog up through several context proxies for
    # each string, and Jinja's newstyle wrappers call them through the template context: a tenth of a page's
    # CPU. These do what those do (a newstyle gettext, formatted and escaped as Jinja's) with the request's
    # catalog found once per locale (i18n.page_catalog); `_` is gettext itself rather than Jinja's alias to it.
    app.jinja_env.globals.update(_=i18n.template_gettext, gettext=i18n.template_gettext,
                                 ngettext=i18n.template_ngettext)
    widgets.install()  # WTForms' attribute markup, the same for less (reservations/widgets.py)
    with app.app_context():
        from . import pool, prepared

        pool.install(db.engine)  # instead of pool_pre_ping: reservations/pool.py
        prepared.install(db.engine)  # a transaction that only read ends with COMMIT: reservations/prepared.py
        if db.engine.dialect.name == "sqlite":
            _serialise_sqlite_writes(db.engine)

    from . import cli, filters, observability, security, views

    security.init_app(app)
    observability.init_app(app)  # metrics at /metrics, one log line per request
    views.register(app)
    cli.register(app)
    from .jobs import jobs_cli

    app.cli.add_command(jobs_cli)
    from .finance.cli import finance_cli

    app.cli.add_command(finance_cli)
    filters.register(app)
    return app


class TemplateBytecode(FileSystemBytecodeCache):
    """Jinja's compiled templates on disk, keyed by each template's name and the checksum of its source (and the
    Python version), so an edited template is compiled again. Each file is written to a temporary name and
    renamed, so processes sharing the folder never read half of one. A folder that cannot be made, read or
    written costs the compile it would have saved, never a page."""

    def __init__(self, directory: str):
        try:
            Path(directory).mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # every load and dump below then fails quietly
        super().__init__(directory)

    def load_bytecode(self, bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except OSError:
            pass

    def dump_bytecode(self, bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


def select_locale() -> str:
    """The session's choice, then the user's, then Japanese. Outside a request (jobs), the default."""
    languages = current_app.config["LANGUAGES"]
    if has_request_context():
        chosen = session.get("lang")
        if chosen in languages:
            return chosen
        if current_user and getattr(current_user, "locale", None) in languages:
            return current_user.locale
    return current_app.config["BABEL_DEFAULT_LOCALE"]


def _serialise_sqlite_writes(engine) -> None:
    """Make every SQLite transaction that writes BEGIN IMMEDIATE; page views begin DEFERRED.

    pysqlite's own transaction handling begins lazily and deferred, so two
    bookings could both read "free" and then both write. Taking the write lock
    at BEGIN serialises writers, so the overlap check and the insert happen as
    one step. Page views only read: they begin DEFERRED and, in WAL mode, never
    wait on a writer. Which units of work write, and what happens to a write
    in a read transaction: reservations/db_mode.py.
    """
    from . import db_mode

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        mode = db_mode.unit_of_work_mode()
        conn.info[db_mode.MODE_KEY] = mode
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == db_mode.WRITE else "BEGIN DEFERRED")

    event.listen(engine, "before_cursor_execute", db_mode.refuse_writes_in_reads)
    current_app.teardown_request(db_mode.end_read_transaction)
