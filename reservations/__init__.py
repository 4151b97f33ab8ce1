"""reservations: public facility reservations with cashless checkout."""
from functools import lru_cache
from pathlib import Path

from babel import support
from flask import Flask, current_app, g, has_app_context, has_request_context, request, session
from flask_babel import get_locale, get_translations
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from jinja2 import FileSystemBytecodeCache, pass_context
from markupsafe import Markup
from sqlalchemy import event
from wtforms.i18n import messages_path

from .extensions import babel, csrf, db, limiter, login_manager, migrate


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
    app.before_request(lambda: setattr(request, "wtforms_translations", WTFORMS_TRANSLATIONS))
    if app.config["TEMPLATE_BYTECODE_DIR"]:
        app.jinja_env.bytecode_cache = TemplateBytecode(app.config["TEMPLATE_BYTECODE_DIR"])
    # Flask-Babel's template callables look the locale and its catalog up through several context proxies for
    # each string, and Jinja's newstyle wrappers call them through the template context: a tenth of a page's
    # CPU. These do what those do (a newstyle gettext, formatted and escaped as Jinja's) with the request's
    # catalog found once per locale (_page_catalog); `_` is gettext itself rather than Jinja's alias to it.
    app.jinja_env.globals.update(_=_template_gettext, gettext=_template_gettext, ngettext=_template_ngettext)
    with app.app_context():
        from . import pool

        pool.install(db.engine)  # instead of pool_pre_ping: reservations/pool.py
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


@lru_cache(maxsize=8)
def _wtforms_catalog(locale) -> support.Translations:
    return support.Translations.load(messages_path(), [str(locale)], domain="wtforms")


def _babel_choice():
    """Flask-Babel's own record of this context's choices (g._flask_babel: babel_locale once it has chosen), or
    None before it has one or outside an app context."""
    return g.get("_flask_babel") if has_app_context() else None


def _page_locale():
    """The locale Flask-Babel chose for this context (a babel Locale), asked of Flask-Babel only once."""
    return getattr(_babel_choice(), "babel_locale", None) or get_locale()


class _WTFormsTranslations:
    """WTForms' messages (e.g. "Not a valid integer value.") in the request's language, as Flask-WTF asks
    them of `request.wtforms_translations`, each catalog read from disk once per process."""

    def ugettext(self, string: str) -> str:
        return _wtforms_catalog(_page_locale()).ugettext(string)

    def ungettext(self, singular: str, plural: str, n: int) -> str:
        return _wtforms_catalog(_page_locale()).ungettext(singular, plural, n)


WTFORMS_TRANSLATIONS = _WTFormsTranslations()


def _page_catalog() -> support.NullTranslations:
    """The catalog of the locale Flask-Babel chose for this context, kept beside that choice in its own context
    object (g._flask_babel) and used while the choice is the same object: force_locale (a mail in the
    recipient's language) puts another locale there and then the original back, and refresh() removes it."""
    chosen = _babel_choice()
    kept = getattr(chosen, "page_catalog", None)
    if kept is not None and kept[0] is getattr(chosen, "babel_locale", None):
        return kept[1]
    catalog = get_translations()
    chosen = _babel_choice()  # made by get_translations if it was not there yet
    if chosen is not None and getattr(chosen, "babel_locale", None) is not None:
        chosen.page_catalog = (chosen.babel_locale, catalog)
    return catalog


@pass_context
def _template_gettext(context, string: str, **variables) -> str:
    """jinja2.ext's newstyle gettext: always a format string (so "%%" is "%"), escaped under autoescape."""
    translated = _page_catalog().ugettext(string)
    return (Markup(translated) if context.eval_ctx.autoescape else translated) % variables


@pass_context
def _template_ngettext(context, singular: str, plural: str, num: int, **variables) -> str:
    """jinja2.ext's newstyle ngettext: `num` is a variable of the string unless one is given."""
    variables.setdefault("num", num)
    translated = _page_catalog().ungettext(singular, plural, num)
    return (Markup(translated) if context.eval_ctx.autoescape else translated) % variables


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
