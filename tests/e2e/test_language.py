"""Each page of the tour (tests/e2e/tour.py) is wholly in its language.

English pages: no Japanese character (kana, kanji, full-width punctuation and forms) in
the text people see or a screen reader reads (visually hidden text included), in the
accessible attributes (aria-label, title, alt, placeholder, the value of input buttons)
or in the page title. The only Japanese allowed is what the page marks lang="ja": the
catalog's names, readings and addresses where it has no English, and the word 領収書 on
the receipt. The <title> cannot carry a lang attribute, so there the catalog's own
strings (tour.CATALOG) are taken out before looking.

Japanese pages: no Latin-letter word, outside what the page marks lang="en" (the
language switch), the catalog's strings, e-mail addresses, the provider's card widget and the
words in LATIN_ALLOWED.
Numbers, ¥ and times are not words.
"""
import re

import pytest

from tests.e2e import tour

pytestmark = pytest.mark.e2e

# Latin words a Japanese page may show, each with its reason. None is needed so far: e-mail addresses
# are taken out whole (EMAIL), and so is the provider's card widget (CARD_WIDGET).
LATIN_ALLOWED: dict[str, str] = {}
# In production Stripe's own frame, in Stripe's language; in the tests localstripe's stand-in, plain inputs
# named in English ("number", "exp_month") after a "localstripe:" label.
CARD_WIDGET = "#card-element"

JAPANESE = re.compile(r"[\u3000-\u303f\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
                      r"\uf900-\ufaff\uff00-\uffef]+")
LATIN_WORD = re.compile(r"[A-Za-z\uff21-\uff3a\uff41-\uff5a]+")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")

# Every string on the page a person or a screen reader meets, with where it is, leaving out the
# elements whose nearest lang attribute says they are in the other language.
TEXTS = r"""({other, skip}) => {
  const out = [];
  const describe = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (el.classList.length ? '.' + [...el.classList].join('.') : '');
  const otherLanguage = (el) => {
    const marked = el.closest('[lang]');
    return marked !== null && marked.lang.split('-')[0] === other;
  };
  const shown = (el) => {
    const box = el.closest('option, optgroup') ? el.closest('select') || el : el;
    return box.checkVisibility({visibilityProperty: true});
  };
  const ignored = (el) => el.closest('script, style, noscript, template' + (skip ? ', ' + skip : '')) !== null;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    const text = node.textContent.trim();
    if (text && !ignored(el) && shown(el) && !otherLanguage(el)) out.push([describe(el), text]);
  }
  const attributes = ['aria-label', 'aria-description', 'aria-roledescription', 'aria-valuetext', 'aria-placeholder',
                      'title', 'alt', 'placeholder'];
  for (const el of document.body.querySelectorAll('*')) {
    if (ignored(el) || otherLanguage(el)) continue;
    for (const name of attributes) {
      const value = (el.getAttribute(name) || '').trim();
      if (value) out.push([describe(el) + '[' + name + ']', value]);
    }
    if (el.matches('input[type=submit], input[type=button], input[type=reset]') && el.value.trim()) {
      out.push([describe(el) + '[value]', el.value.trim()]);
    }
  }
  out.push(['title', document.title]);
  return out;
}"""


@pytest.fixture
def app_config(app_config):
    return {**app_config, **tour.SETTINGS}


def texts(page, *, other: str, skip: str = "") -> list[tuple[str, str]]:
    return [tuple(pair) for pair in page.evaluate(TEXTS, {"other": other, "skip": skip})]


def without_catalog(text: str) -> str:
    for value in sorted(tour.catalog_texts(), key=len, reverse=True):
        text = text.replace(value, " ")
    return text


def japanese_in(page) -> list[str]:
    found = []
    for where, text in texts(page, other="ja"):
        if where == "title":
            text = without_catalog(text)
        for run in JAPANESE.findall(text):
            found.append(f"{where}: {run!r} in {text[:80]!r}")
    return found


def english_in(page) -> list[str]:
    found = []
    for where, text in texts(page, other="en", skip=CARD_WIDGET):
        cleaned = EMAIL.sub(" ", without_catalog(text))
        for word in LATIN_WORD.findall(cleaned):
            if word not in LATIN_ALLOWED:
                found.append(f"{where}: {word!r} in {text[:80]!r}")
    return found


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_every_page_is_wholly_in_its_language(browser, live_server, app, localstripe, lang):
    world = tour.build_world(app, localstripe, lang=lang)
    visit = tour.Visit(browser, live_server, lang=lang, width=1280)
    look = japanese_in if lang == "en" else english_in
    found: list[str] = []
    def collect(state):
        return lambda name, page: found.extend(f"- {name} ({state}): {f}" for f in look(page))

    try:
        tour.walk(visit, world, collect("signed out"), signed_in=False)
        tour.walk(visit, world, collect("signed in"), signed_in=True)
    finally:
        visit.close()
    other = "Japanese" if lang == "en" else "English"
    assert not found, f"{other} on the {lang} pages:\n" + "\n".join(dict.fromkeys(found))
