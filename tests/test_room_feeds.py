"""A room's iCal feed: behind a secret address staff make and rotate; a wrong or rotated one is 404."""
import re
from datetime import timedelta

import pytest
from icalendar import Calendar
from sqlalchemy import select

from reservations.extensions import db
from reservations.models import AuditEntry, BookingState, Role
from tests.helpers import book, booking_day


@pytest.fixture
def staff(make_user, login_as):
    return login_as(make_user("staff@example.com", role=Role.STAFF))


def feed_url(client, room_id) -> str | None:
    html = client.get(f"/staff/rooms/{room_id}/feed").get_data(as_text=True)
    found = re.search(r'id="feed-url" readonly value="([^"]+)"', html)
    return found.group(1) if found else None


def path(url: str, app) -> str:
    assert url.startswith(app.config["PUBLIC_BASE_URL"] + "/feeds/rooms/")  # built on the public address
    return url.removeprefix(app.config["PUBLIC_BASE_URL"])


def test_staff_make_a_feed_that_parses_and_names_nobody(app, client, staff, room, make_user, now):
    day = booking_day()
    kept = book(make_user(name="山田 花子"), room, ("MORNING",), day=day, now=now)
    gone = book(make_user(name="佐藤 一郎"), room, ("AFTERNOON",), day=day, now=now)
    gone.transition(BookingState.CANCELLED, reason="test")
    db.session.commit()
    kept_id = kept.id
    assert feed_url(client, room.id) is None
    assert client.post(f"/staff/rooms/{room.id}/feed").status_code == 302
    response = client.get(path(feed_url(client, room.id), app))
    assert response.status_code == 200 and response.mimetype == "text/calendar"
    calendar = Calendar.from_ical(response.data)
    events = [c for c in calendar.walk("VEVENT")]
    assert [str(e["uid"]) for e in events] == [f"booking-{kept_id}@reservations"]  # the cancelled one is not there
    assert events[0].decoded("dtstart") == kept.start_at and events[0].decoded("dtend") == kept.end_at
    assert "山田" not in response.get_data(as_text=True) and "佐藤" not in response.get_data(as_text=True)


def test_a_rotated_or_wrong_address_is_not_found(app, client, staff, room):
    client.post(f"/staff/rooms/{room.id}/feed")
    first = path(feed_url(client, room.id), app)
    client.post(f"/staff/rooms/{room.id}/feed")
    second = path(feed_url(client, room.id), app)
    assert first != second
    assert client.get(first).status_code == 404
    assert client.get(second).status_code == 200
    assert client.get("/feeds/rooms/not-a-token.ics").status_code == 404
    assert client.get("/feeds/rooms/" + "x" * 500 + ".ics").status_code == 404
    # Audited, without the secret itself.
    entries = db.session.scalars(select(AuditEntry).where(AuditEntry.subject == "room")).all()
    assert [e.action for e in entries] == ["feed_created", "feed_rotated"]
    assert all(second.split("/")[-1].removesuffix(".ics") not in str(e.data) for e in entries)


@pytest.mark.payments  # a hold waiting for its payment, made an hour ago: it ran out 50 minutes ago
def test_the_feed_leaves_out_a_hold_that_ran_out(app, client, staff, room, resident, now):
    lapsed = book(resident, room, now=now - timedelta(hours=1))
    assert lapsed.state == BookingState.HELD and lapsed.hold_expires_at < now
    client.post(f"/staff/rooms/{room.id}/feed")
    calendar = Calendar.from_ical(client.get(path(feed_url(client, room.id), app)).data)
    assert list(calendar.walk("VEVENT")) == []
