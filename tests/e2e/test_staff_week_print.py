"""A room's week prints on one landscape A4 page for the wall, as a building's day does."""
import re
from datetime import date, time, timedelta

import pytest

from reservations.extensions import db
from reservations.models import Booking, Role
from reservations.timeutil import at_tokyo
from tests.e2e import tour

pytestmark = pytest.mark.e2e


def test_a_rooms_week_prints_on_one_landscape_a4_page(browser, live_server, app, make_user, make_hourly_room):
    court = make_hourly_room()  # twelve hours a day: the widest week there is
    staff = make_user("staff@example.com", role=Role.STAFF, name="窓口 職員")
    start = date(2027, 2, 8)
    for n in range(7):
        day = start + timedelta(days=n)
        db.session.add(Booking(user_id=staff.id, room_id=court.id, start_at=at_tokyo(day, time(10)),
                               end_at=at_tokyo(day, time(12)), state="confirmed", price=0,
                               residency="resident", kind="block", note="コート整備"))
    db.session.commit()
    key, room_id = staff.get_id(), court.id
    db.session.rollback()  # nothing left open in the test thread: on SQLite it would lock out the server
    visit = tour.Visit(browser, live_server, lang="ja", width=1280)
    try:
        tour.set_session(visit, app, {"lang": "ja", "_user_id": key, "_fresh": True})
        visit.page.goto(f"/staff/rooms/{room_id}/week?start={start.isoformat()}")
        visit.page.emulate_media(media="print")
        for chrome in ("header.site", ".crumbs", ".day-nav", "[data-print]", ".free-actions"):
            assert not visit.page.locator(chrome).first.is_visible(), chrome
        assert visit.page.locator(".staff-grid tbody tr").count() == 7
        assert visit.page.locator("a.entry-blocked").count() == 7 * 2  # two hours a day, in each of its cells
        pdf = visit.page.pdf(prefer_css_page_size=True)
    finally:
        visit.close()
    boxes = [(float(w), float(h)) for w, h in re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)]
    assert boxes and all(round(w) == 842 and round(h) == 595 for w, h in boxes), boxes  # A4 landscape, in points
    assert len(re.findall(rb"/Type\s*/Page(?![s\w])", pdf)) == 1
