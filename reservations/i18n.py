"""The page's language, found once per request: what Flask-Babel chose, its catalog, WTForms' messages in it,
and the gettext of the code (gettext, ngettext, pgettext and lazy_gettext) and of the templates.

Flask-Babel answers get_locale() and gettext() by walking several context proxies each time; a page asks
for its language and its strings hundreds of times (each card of a search, each cell of a calendar). These
read Flask-Babel's own record of the request's choice (g._flask_babel) once it has made it, and keep the
catalog beside it, so they give what Flask-Babel gives for less. The code imports its gettext from here rather
than from flask_babel (tests/test_i18n.py holds both to the same strings); create_app puts the templates' in
place. Flask-Babel still chooses the locale, and force_locale and format_date are its own.
"""
from functools import lru_cache

from babel import support
from flask import g, has_app_context
from flask_babel import get_locale, get_translations
from flask_babel.speaklater import LazyString
from jinja2 import pass_context
from markupsafe import Markup
from wtforms.i18n import messages_path


@lru_cache(maxsize=8)
def wtforms_catalog(locale) -> support.Translations:
    return support.Translations.load(messages_path(), [str(locale)], domain="wtforms")


def _babel_choice():
    """Flask-Babel's own record of this context's choices (g._flask_babel: babel_locale once it has chosen), or
    None before it has one or outside an app context."""
    return g.get("_flask_babel") if has_app_context() else None


def page_locale():
    """The locale Flask-Babel chose for this context (a babel Locale), asked of Flask-Babel only once."""
    return getattr(_babel_choice(), "babel_locale", None) or get_locale()


class _WTFormsTranslations:
    """WTForms' messages (e.g. "Not a valid integer value.") in the request's language, as Flask-WTF asks
    them of `request.wtforms_translations`, each catalog read from disk once per process."""

    def ugettext(self, string: str) -> str:
        return wtforms_catalog(page_locale()).ugettext(string)

    def ungettext(self, singular: str, plural: str, n: int) -> str:
        return wtforms_catalog(page_locale()).ungettext(singular, plural, n)


WTFORMS_TRANSLATIONS = _WTFormsTranslations()


def page_catalog() -> support.NullTranslations:
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


def gettext(string: str, **variables) -> str:
    """flask_babel.gettext: the string in the page's language, formatted with `variables` when there are any."""
    translated = page_catalog().ugettext(string)
    return translated % variables if variables else translated


def ngettext(singular: str, plural: str, num: int, **variables) -> str:
    """flask_babel.ngettext: `num` picks the plural form and is a variable of the string."""
    variables.setdefault("num", num)
    return page_catalog().ungettext(singular, plural, num) % variables


def pgettext(context: str, string: str, **variables) -> str:
    """flask_babel.pgettext: gettext of a string in a context (msgctxt)."""
    translated = page_catalog().upgettext(context, string)
    return translated % variables if variables else translated


def lazy_gettext(string: str, **variables) -> LazyString:
    """flask_babel.lazy_gettext: a string translated each time it is used, in the language of that moment."""
    return LazyString(gettext, string, **variables)


@pass_context
def template_gettext(context, string: str, **variables) -> str:
    """jinja2.ext's newstyle gettext: always a format string (so "%%" is "%"), escaped under autoescape."""
    translated = page_catalog().ugettext(string)
    return (Markup(translated) if context.eval_ctx.autoescape else translated) % variables


@pass_context
def template_ngettext(context, singular: str, plural: str, num: int, **variables) -> str:
    """jinja2.ext's newstyle ngettext: `num` is a variable of the string unless one is given."""
    variables.setdefault("num", num)
    translated = page_catalog().ungettext(singular, plural, num)
    return (Markup(translated) if context.eval_ctx.autoescape else translated) % variables


def current_language() -> str:
    """The page's language code: "ja" or "en"."""
    return str(page_locale() or "ja")
