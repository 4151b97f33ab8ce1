"""WTForms' own messages come in the request's language from catalogs read once per process (Flask-WTF alone
read the catalog from disk again in every request that built a form)."""
from flask_babel import force_locale
from flask_wtf import FlaskForm
from wtforms import IntegerField

from reservations.i18n import wtforms_catalog


class NumberForm(FlaskForm):
    class Meta:
        csrf = False

    n = IntegerField()


def errors_of_a_bad_number(app) -> list[str]:
    with app.test_request_context("/", method="POST", data={"n": "x"}):
        app.preprocess_request()
        form = NumberForm()
        form.validate()
        return list(form.n.errors)


def test_wtforms_messages_follow_the_language_and_each_catalog_is_read_once(app):
    wtforms_catalog.cache_clear()

    japanese = [errors_of_a_bad_number(app) for _ in range(3)]
    with force_locale("en"):
        english = [errors_of_a_bad_number(app) for _ in range(3)]

    assert japanese == [["無効な整数です。"]] * 3
    assert english == [["Not a valid integer value."]] * 3
    assert wtforms_catalog.cache_info().misses == 2  # one read per language, not one per request
