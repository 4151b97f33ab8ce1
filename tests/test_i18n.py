"""Translations: every string people can see has a Japanese translation, and the pages use it.

The catalog tests extract the msgids from the source tree as it is now (the same
mapping and keywords as `pybabel extract -F babel.cfg -k _l -k lazy_gettext`) and
read the Japanese .po directly, so they need no compiled .mo: a new string that
nobody translated fails here, not on a Japanese page in production.
"""
import re
from collections import Counter
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
TRANSLATIONS = ROOT / "reservations" / "translations"
JA_PO = TRANSLATIONS / "ja" / "LC_MESSAGES" / "messages.po"
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}

# %(name)s, %s, %5.2f, %% ... and {name}, {0}, {}.
PERCENT_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[diouxXeEfFgGcrsa%]")
BRACE_PLACEHOLDER = re.compile(r"\{[^{}\s]*\}")


def placeholders(text: str) -> Counter:
    return Counter(PERCENT_PLACEHOLDER.findall(text) + BRACE_PLACEHOLDER.findall(text))


def ids(message) -> tuple[str, ...]:
    return message.id if isinstance(message.id, tuple) else (message.id,)


def strings(message) -> tuple[str, ...]:
    return message.string if isinstance(message.string, tuple) else (message.string,)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> Catalog:
    """The msgids in the source tree now, written to and read back from a temporary .pot."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg, filename="babel.cfg")
    catalog = Catalog(project="reservations")
    for filename, lineno, message, comments, context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS,
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    pot = tmp_path_factory.mktemp("i18n") / "messages.pot"
    with pot.open("wb") as f:
        write_po(f, catalog)
    with pot.open("rb") as f:
        return read_po(f)


@pytest.fixture(scope="module")
def ja() -> Catalog:
    with JA_PO.open("rb") as f:
        return read_po(f, locale="ja")


def test_the_source_tree_has_strings_to_translate(extracted):
    msgids = {ids(m)[0] for m in extracted if m.id}
    # A broken mapping would extract nothing and let every other test pass.
    assert {"Facility reservations", "Find a room", "Your booking is confirmed.", "Hall"} <= msgids


def test_every_msgid_has_a_japanese_translation(extracted, ja):
    missing = []
    for message in extracted:
        if not message.id:
            continue
        translated = ja.get(message.id, message.context)
        where = ", ".join(f"{path}:{line}" for path, line in message.locations)
        if translated is None:
            problem = "not in the ja catalog"
        elif translated.fuzzy:
            problem = "fuzzy"
        elif not all(s.strip() for s in strings(translated)):
            problem = "empty msgstr"
        else:
            continue
        missing.append(f"{ids(message)[0]!r} ({problem}; {where})")
    assert not missing, (
        f"{len(missing)} msgid(s) lack a Japanese translation in {JA_PO.relative_to(ROOT)}. Run "
        "`pybabel extract -F babel.cfg -k _l -k lazy_gettext -o reservations/translations/messages.pot . && "
        "pybabel update -i reservations/translations/messages.pot -d reservations/translations`, then translate:\n"
        + "\n".join(missing)
    )


def test_japanese_has_one_plural_form(ja):
    assert ja.num_plurals == 1
    for message in ja:
        if message.pluralizable:
            assert len(strings(message)) == 1, ids(message)[0]


def test_japanese_translations_keep_the_placeholders_of_their_msgid(ja):
    wrong = []
    for message in ja:
        if not message.id or not any(strings(message)):
            continue
        # Japanese has one form for every number, so it says what the plural msgid says.
        expected = placeholders(ids(message)[-1])
        for text in strings(message):
            if text and placeholders(text) != expected:
                wrong.append(f"{ids(message)[-1]!r}: wants {sorted(expected.elements())}, "
                             f"{text!r} has {sorted(placeholders(text).elements())}")
    assert not wrong, "Placeholders differ from the msgid:\n" + "\n".join(wrong)


def test_japanese_translations_keep_the_leading_and_trailing_whitespace(ja):
    def edges(text: str) -> tuple[str, str]:
        return text[: len(text) - len(text.lstrip())], text[len(text.rstrip()):]

    wrong = [
        f"{ids(message)[0]!r} -> {text!r}"
        for message in ja
        if message.id
        for text in strings(message)
        if text and edges(text) != edges(ids(message)[0])
    ]
    assert not wrong, "Leading or trailing whitespace differs from the msgid:\n" + "\n".join(wrong)


def test_search_page_is_japanese_by_default_and_english_after_switching(client):
    html = client.get("/").get_data(as_text=True)
    hint = "(is the ja .mo compiled? `make translations`)"
    assert '<html lang="ja">' in html
    assert "<h1>施設を探す</h1>" in html, hint
    assert "施設予約" in html and "検索" in html, hint
    assert "Find a room" not in html

    assert client.post("/lang/en", data={"next": "/"}).status_code == 302

    html = client.get("/").get_data(as_text=True)
    assert '<html lang="en">' in html
    assert "<h1>Find a room</h1>" in html and "Facility reservations" in html
    assert "施設を探す" not in html


# reservations.i18n's gettext family (what the code imports) against Flask-Babel's own, string by string: the
# same translation in each language, with variables, plural forms and a context, lazily, and under force_locale.
CASES = [
    ("gettext", ("Find a room",), {}),
    ("gettext", ("Availability on %(date)s:",), {"date": "2026-12-03"}),
    ("gettext", ("a msgid nobody translated, 100%",), {}),
    ("ngettext", ("%(num)d room found", "%(num)d rooms found", 1), {}),
    ("ngettext", ("%(num)d room found", "%(num)d rooms found", 7), {}),
    ("pgettext", ("calendar mark", "Closed"), {}),
    ("pgettext", ("calendar mark", "Lottery"), {}),
]


@pytest.mark.parametrize("language", ["ja", "en"])
def test_the_codes_gettext_gives_what_flask_babels_gives(app, language):
    import flask_babel
    from flask_babel import force_locale

    from reservations import i18n

    with app.test_request_context("/", headers={"Accept-Language": language}):
        for name, args, variables in CASES:
            ours, theirs = getattr(i18n, name), getattr(flask_babel, name)
            assert ours(*args, **variables) == theirs(*args, **variables), (name, args)
            with force_locale("en" if language == "ja" else "ja"):  # a mail in the other language
                assert ours(*args, **variables) == theirs(*args, **variables), (name, args, "forced")
            assert ours(*args, **variables) == theirs(*args, **variables), (name, args, "after")
        lazy = i18n.lazy_gettext("Find a room")
        assert str(lazy) == flask_babel.gettext("Find a room")
        with force_locale("en"):
            assert str(lazy) == "Find a room"
        with force_locale("ja"):
            assert str(lazy) == "施設を探す"
    # Outside a request (a job, in the app context only), as Flask-Babel gives it.
    assert i18n.gettext("Find a room") == flask_babel.gettext("Find a room")


def test_the_code_takes_its_gettext_from_reservations_i18n():
    """A module that imports Flask-Babel's gettext pays its context lookups on every string."""
    offending = [str(path.relative_to(ROOT)) for path in (ROOT / "reservations").rglob("*.py")
                 if re.search(r"from flask_babel import[^\n]*\b(n|p|lazy_)?gettext\b", path.read_text("utf-8"))
                 and path.name != "i18n.py"]
    assert offending == []
