"""axe-core on every page of the tour (tests/e2e/tour.py), for WCAG 2.0 and 2.1, levels A and AA.

One test per (language, signed in or out): one browser context walks all its pages,
scanning each at 360 and at 1280 px, and the test fails on any violation node, listing
page, width, rule and targets. The
route-list test keeps the tour complete: a resident-side GET route that no step shows fails it.
axe-core is the copy bundled with the axe-playwright-python package (pyproject.toml, test extra).
"""
import pytest
from axe_playwright_python.base import AXE_SCRIPT

from tests.e2e import tour
from tests.e2e.conftest import LANGUAGE_PER_DATABASE

pytestmark = pytest.mark.e2e

TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
# Rules whose "needs review" answer is a failure here. duplicate-id-aria: axe leaves it to a person since
# WCAG 2.2 dropped 4.1.1, but an id that a <label for> or an aria-* attribute points at and that is not
# unique ties the label to the wrong element (1.3.1, 4.1.2): the profile page's "password" heading once
# took the new-password field's label.
STRICT = {"duplicate-id-aria"}
WIDTHS = [360, 1280]

# Routes no tour step shows, and why: an endpoint, or a blueprint ("name.").
NOT_IN_THE_TOUR = {
    "static": "files, not pages",
    "webhooks.": "the payment provider's endpoint, no page",
    "feeds.": "iCal files for calendar programs, no page (tests/test_room_feeds.py)",
    "staff.": "the back office: tests/e2e/test_back_office_pages.py checks it",
    "admin.": "the back office: tests/e2e/test_back_office_pages.py checks it",
    "finance.": "the back office: tests/e2e/test_back_office_pages.py checks it",
    "health.healthz": "the load balancer's health check, JSON, no page (tests/test_health.py)",
    "observability.metrics": "Prometheus metrics for the scraper, text, no page (tests/test_metrics.py)",
    "lottery.publication": "a round's published draw as a JSON file for `flask lottery verify`, no page",
}


def not_in_the_tour(endpoint: str) -> bool:
    return any(endpoint.startswith(key) if key.endswith(".") else endpoint == key for key in NOT_IN_THE_TOUR)


@pytest.fixture
def app_config(app_config):
    return {**app_config, **tour.SETTINGS}


def axe(page) -> list[dict]:
    """The violations axe finds on the page as it is now, for the WCAG 2.x A and AA rules only.

    axe is in the page already: the context adds it to every document (an init script)."""
    result = page.evaluate("options => axe.run(document, options)",
                           {"runOnly": {"type": "tag", "values": TAGS}, "resultTypes": ["violations", "incomplete"]})
    return result["violations"] + [{**r, "impact": f"{r['impact']}, needs review: counted"}
                                   for r in result["incomplete"] if r["id"] in STRICT]


def report(found: list[tuple[str, dict]]) -> str:
    lines = []
    for name, violation in found:
        for node in violation["nodes"]:
            message = (node.get("any") or node.get("all") or node.get("none") or [{}])[0].get("message", "")
            lines.append(f"- {name}: {violation['id']} ({violation['impact']}) at {' '.join(map(str, node['target']))}"
                         f" — {message or violation['help']}")
    return "\n".join(lines)


@pytest.fixture(params=["ja", "en"])
def lang(request):
    return request.param


@pytest.mark.parametrize(("backend", "lang"), LANGUAGE_PER_DATABASE)
@pytest.mark.parametrize("signed_in", [False, True], ids=["signed-out", "signed-in"])
def test_every_page_passes_axe(browser, live_server, app, backend, localstripe, lang, signed_in):
    """One walk, each page scanned at every width: the page is laid out again at each (the media
    queries apply on a resize as on a load), and walking once halves what the run costs."""
    world = tour.build_world(app, localstripe, lang=lang, bookings=signed_in)
    visit = tour.Visit(browser, live_server, lang=lang, width=WIDTHS[-1])
    visit.context.add_init_script(AXE_SCRIPT)  # in every page before its own scripts, whatever the CSP says
    found: list[tuple[str, dict]] = []

    def scan(name, page):
        for width in WIDTHS:
            height = tour.PHONE_HEIGHT if width < 640 else tour.DESKTOP_HEIGHT
            page.set_viewport_size({"width": width, "height": height})
            violations = axe(page)
            tour.AXE_SUMMARY.record(name, signed_in, lang, width, backend, sum(len(v["nodes"]) for v in violations))
            found.extend((f"{name} at {width} px", v) for v in violations)

    try:
        names = tour.walk(visit, world, scan, signed_in=signed_in)
    finally:
        visit.close()
    assert names == tour.page_names(signed_in)
    assert not found, f"axe found {sum(len(v['nodes']) for _, v in found)} failing node(s) " \
                      f"({lang}, {'signed in' if signed_in else 'signed out'}):\n{report(found)}"


def test_the_tour_shows_every_resident_page(app):
    """Every GET route of the resident side is shown by some step of the tour, so every check sees it."""
    missing = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or not_in_the_tour(rule.endpoint):
            continue
        if rule.endpoint not in tour.COVERED:
            missing.append(f"{rule.endpoint} ({rule.rule})")
    assert not missing, "GET routes no page of tests/e2e/tour.py shows; add a step: " + ", ".join(missing)
    # And the exclusions still name something: a renamed blueprint would silently leave them behind.
    for key in NOT_IN_THE_TOUR:
        assert any(not_in_the_tour(r.endpoint) for r in app.url_map.iter_rules() if r.endpoint.startswith(key)), key
