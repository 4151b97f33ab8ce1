"""Reflow and text resize on every page of the tour (tests/e2e/tour.py), in Japanese and English.

- At 320 CSS px wide (WCAG 1.4.10, a 1280 px window zoomed to 400 %), no page scrolls sideways.
- With the text at 200 % (WCAG 1.4.4) nothing is cut off. How: a 1280 px viewport with the root
  font size set to 200 % through the CSSOM, as a browser's "text only" zoom or a larger default
  font does. Full-page zoom at 200 % would be a 640 px layout, which the 320 px check covers
  already; what it cannot show is text that grows while the layout's pixel sizes (fixed widths,
  heights, min-heights) stay put, and that is what cuts text off. So at 200 %: no sideways page
  scroll, and no element whose overflow is hidden or clip has content beyond its box. Left out:
  .visually-hidden (clipped on purpose, for screen readers), form fields (their text scrolls
  inside them) and the regions that scroll on purpose (overflow auto, the focusable .scroll).

And two checks of the phone layout at 360 px, on the first screen people see:
- the site header is one row (about the brand link's height);
- on a room page, the availability calendar's heading is within the first screen.
"""
import pytest
from playwright.sync_api import expect

from tests.e2e import tour
from tests.e2e.conftest import LANGUAGE_PER_DATABASE

pytestmark = pytest.mark.e2e

NARROW = {"width": 320, "height": 640}
WIDE = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": tour.PHONE_HEIGHT}

LAYOUT = r"""(textSize) => {
  const root = document.documentElement;
  root.style.fontSize = textSize;  // CSSOM: not an inline style the Content-Security-Policy forbids
  const describe = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (el.classList.length ? '.' + [...el.classList].join('.') : '');
  const exempt = (el) => el.closest('.visually-hidden, input, select, textarea') !== null;
  const scrolls = (el) => {
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      const s = getComputedStyle(a);
      if (['auto', 'scroll'].includes(s.overflowX)) return true;
    }
    return false;
  };
  const limit = root.clientWidth;
  const wide = [];
  const wideSet = new Set();
  const clipped = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (exempt(el) || !el.checkVisibility()) continue;
    const box = el.getBoundingClientRect();
    if (box.right > limit + 1 && !scrolls(el)) {
      wideSet.add(el);
      // The outermost wide elements say most: their children are wide because they are.
      if (!wideSet.has(el.parentElement)) {
        wide.push(describe(el) + ' (' + Math.round(box.left) + '–' + Math.round(box.right) + ' px)');
      }
    }
    const s = getComputedStyle(el);
    const hidesX = ['hidden', 'clip'].includes(s.overflowX), hidesY = ['hidden', 'clip'].includes(s.overflowY);
    const overX = el.scrollWidth - el.clientWidth, overY = el.scrollHeight - el.clientHeight;
    if ((hidesX && overX > 1) || (hidesY && overY > 1)) {
      clipped.push(describe(el) + ' cuts ' + (hidesX && overX > 1 ? overX + ' px across ' : '') +
                   (hidesY && overY > 1 ? overY + ' px down ' : '') + '"' + el.innerText.trim().slice(0, 40) + '"');
    }
  }
  const measured = {scrollWidth: root.scrollWidth, clientWidth: root.clientWidth,
                    fontSize: getComputedStyle(root).fontSize, wide: wide.slice(0, 5), clipped: clipped.slice(0, 10)};
  root.style.fontSize = '';
  return measured;
}"""


@pytest.fixture
def app_config(app_config):
    return {**app_config, **tour.SETTINGS}


def layout_problems(page, label: str, text_size: str = "") -> list[str]:
    """What is too wide or cut off on the page as it is laid out now, with the root font size at `text_size`."""
    layout = page.evaluate(LAYOUT, text_size)
    if text_size == "200%":
        assert layout["fontSize"] == "32px", layout["fontSize"]  # the text really was at 200 %
    found = []
    if layout["scrollWidth"] > layout["clientWidth"]:
        found.append(f"{label}: the page scrolls sideways ({layout['scrollWidth']} px of content in "
                     f"{layout['clientWidth']} px); too wide: {', '.join(layout['wide']) or '?'}")
    found += [f"{label}: {c}" for c in layout["clipped"]]
    return found


@pytest.mark.parametrize(("backend", "lang"), LANGUAGE_PER_DATABASE)
def test_every_page_reflows_at_320_px_and_keeps_200_percent_text_whole(browser, live_server, app, localstripe, lang):
    world = tour.build_world(app, localstripe, lang=lang)
    visit = tour.Visit(browser, live_server, lang=lang, width=NARROW["width"], height=NARROW["height"])
    found: list[str] = []

    def check(name, page):
        found.extend(layout_problems(page, f"{name}, 320 px"))
        # The same page, wide, with the text at 200 %; then back for the next step.
        page.set_viewport_size(WIDE)
        found.extend(layout_problems(page, f"{name}, 200 % text", "200%"))
        page.set_viewport_size(NARROW)

    try:
        for signed_in in (False, True):
            tour.walk(visit, world, check, signed_in=signed_in)
    finally:
        visit.close()
    assert not found, f"Reflow and text size ({lang}):\n- " + "\n- ".join(found)


@pytest.fixture
def phone(browser, live_server, app, localstripe, lang):
    """A 360 px phone in `lang`, signed out, and the world of a signed-out walk."""
    world = tour.build_world(app, localstripe, lang=lang, bookings=False)
    visit = tour.Visit(browser, live_server, lang=lang, width=PHONE["width"], height=PHONE["height"])
    yield visit, world
    visit.close()


@pytest.fixture(params=["ja", "en"])
def lang(request):
    return request.param


HEADER = r"""() => {
  const header = document.querySelector('header.site');
  const brand = header.querySelector('.brand');
  const style = getComputedStyle(header);
  const inner = header.getBoundingClientRect().height - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom)
    - parseFloat(style.borderTopWidth) - parseFloat(style.borderBottomWidth);
  const rows = {};
  for (const el of header.querySelectorAll('a, button, select')) {
    if (!el.checkVisibility()) continue;
    const top = Math.round(el.getBoundingClientRect().top / 8) * 8;
    (rows[top] = rows[top] || []).push(el.textContent.trim());
  }
  return {inner: inner, brand: brand.getBoundingClientRect().height, rows: Object.values(rows)};
}"""


def test_the_site_header_is_one_row_on_a_phone(phone, lang):
    visit, world = phone
    found = []
    for signed_in in (False, True):
        tour.sign_in(visit, world, signed_in=signed_in)
        visit.page.goto("/")
        expect(visit.page.locator("html")).to_have_attribute("lang", lang)
        header = visit.page.evaluate(HEADER)
        # One row: the header's content is no taller than its tallest item, the brand link (with a little slack).
        if header["inner"] > header["brand"] * 1.25:
            found.append(f"{'signed in' if signed_in else 'signed out'}: {header['inner']:.0f} px tall for a "
                         f"{header['brand']:.0f} px brand link, in {len(header['rows'])} rows: {header['rows']}")
    assert not found, f"The site header wraps on a 360 px phone ({lang}):\n- " + "\n- ".join(found)


def test_the_calendar_heading_is_on_the_first_screen_of_a_phone(phone, lang):
    visit, world = phone
    tour.sign_in(visit, world, signed_in=False)
    visit.page.goto(f"/rooms/{world.room_id}")
    heading = visit.page.locator("#calendar-title")
    expect(heading).to_be_visible()
    top = heading.evaluate("el => el.getBoundingClientRect().top")
    assert top < PHONE["height"], (
        f"On a 360 × {PHONE['height']} px phone ({lang}) the calendar's heading starts at {top:.0f} px: "
        "below the first screen")
