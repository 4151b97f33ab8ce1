"""The audit trail, searched by staff (scoped to their buildings) and shown to residents without staff notes."""
from datetime import UTC, datetime

import pytest

from reservations.extensions import db
from reservations.models import AuditEntry, Building, Role, record
from reservations.services import audit_trail
from tests.helpers import book, booking_day, calendar_booking


@pytest.fixture
def world(room, make_room, make_user, resident, now):
    """Two buildings, a booking in each, and entries about them, their payments, users and rooms."""
    other = Building(name="別の会館")
    db.session.add(other)
    db.session.flush()
    theirs_room = make_room("他館の部屋")
    theirs_room.building_id = other.id
    db.session.commit()
    here = make_user("here@example.com", role=Role.STAFF, name="職員 こちら", buildings=[room.building])
    there = make_user("there@example.com", role=Role.STAFF, name="職員 あちら", buildings=[other])
    admin = make_user("admin@example.com", role=Role.ADMIN, name="管理 者")
    someone = make_user("someone@example.com", name="別の 人")
    ours = calendar_booking(resident, room, booking_day(), "MORNING", paid=True)
    theirs = calendar_booking(someone, theirs_room, booking_day(), "MORNING", paid=True)
    old, new = datetime(2027, 1, 5, 3, tzinfo=UTC), datetime(2027, 1, 20, 3, tzinfo=UTC)
    db.session.add_all([
        AuditEntry(at=old, subject="booking", subject_id=ours.id, action="held", actor_id=resident.id,
                   data={"marker": "ours-held"}),
        AuditEntry(at=new, subject="booking", subject_id=ours.id, action="confirmed->cancelled", actor_id=here.id,
                   data={"reason": "phone call", "marker": "ours-cancelled"}),
        AuditEntry(at=new, subject="payment", subject_id=ours.payment.id, action="refund requested",
                   actor_id=here.id, data={"marker": "ours-refund"}),
        AuditEntry(at=new, subject="room", subject_id=room.id, action="feed_created", actor_id=here.id,
                   data={"marker": "ours-room"}),
        AuditEntry(at=new, subject="booking", subject_id=theirs.id, action="held", actor_id=someone.id,
                   data={"marker": "theirs-held"}),
        AuditEntry(at=new, subject="payment", subject_id=theirs.payment.id, action="refund requested",
                   actor_id=there.id, data={"marker": "theirs-refund"}),
        AuditEntry(at=new, subject="room", subject_id=theirs_room.id, action="feed_created", actor_id=there.id,
                   data={"marker": "theirs-room"}),
        AuditEntry(at=new, subject="user", subject_id=resident.id, action="logged_out", actor_id=resident.id,
                   data={"marker": "user-only"}),
    ])
    db.session.commit()
    return {"here": here, "there": there, "admin": admin, "resident": resident, "someone": someone,
            "ours": ours.id, "theirs": theirs.id}


def markers(client, **query) -> set[str]:
    response = client.get("/staff/audit", query_string=query)
    assert response.status_code == 200, response.status_code
    html = response.get_data(as_text=True)
    return {m for m in ("ours-held", "ours-cancelled", "ours-refund", "ours-room", "theirs-held", "theirs-refund",
                        "theirs-room", "user-only") if m in html}


OURS = {"ours-held", "ours-cancelled", "ours-refund", "ours-room"}
THEIRS = {"theirs-held", "theirs-refund", "theirs-room"}


def test_staff_see_only_their_buildings_entries_whatever_they_search(client, english, login_as, world):
    login_as(world["here"])
    assert markers(client) == OURS  # no other building's, and nothing about no building (a user's log-out)
    assert markers(client, booking=world["theirs"]) == set()
    assert markers(client, user=world["someone"].email) == set()
    assert markers(client, actor=world["there"].email) == set()
    login_as(world["there"])
    assert markers(client) == THEIRS


def test_admin_see_every_entry(client, english, login_as, world):
    login_as(world["admin"])
    assert markers(client) == OURS | THEIRS | {"user-only"}


def test_each_filter_narrows_the_search(client, english, login_as, world):
    login_as(world["admin"])
    assert markers(client, booking=world["ours"]) == {"ours-held", "ours-cancelled", "ours-refund"}
    assert markers(client, user=world["resident"].email.upper()) == {"ours-held", "ours-cancelled", "ours-refund",
                                                                      "user-only"}
    assert markers(client, user=str(world["someone"].id)) == {"theirs-held", "theirs-refund"}
    assert markers(client, actor=world["here"].email) == {"ours-cancelled", "ours-refund", "ours-room"}
    assert markers(client, actor=str(world["resident"].id), first="2027-01-01", last="2027-01-10") == {"ours-held"}
    assert markers(client, first="2027-01-06") == (OURS | THEIRS | {"user-only"}) - {"ours-held"}
    assert markers(client, user="nobody@example.com") == set()  # nobody: nothing, not everything


@pytest.mark.parametrize("query", [{"booking": "abc"}, {"booking": "0"}, {"user": "not an address"},
                                   {"first": "2027-02-30"}, {"first": "2027-03-02", "last": "2027-03-01"},
                                   {"booking": str(10**30)}, {"last": "9999-12-31"}])
def test_bad_search_input_gets_a_clear_message_not_a_500(client, english, login_as, world, query):
    login_as(world["here"])
    response = client.get("/staff/audit", query_string=query)
    assert response.status_code == 422
    assert "Please check what you entered" in response.get_data(as_text=True)


def test_the_search_shows_at_most_the_limit_newest_first(app, world):
    for n in range(5):
        record("booking", world["ours"], f"step {n}")
    db.session.commit()
    found = audit_trail.search(audit_trail.Filters(booking_id=world["ours"]), world["here"], limit=3)
    assert len(found) == 3 and found == sorted(found, key=lambda e: (e.at, e.id), reverse=True)


def test_the_staff_booking_page_shows_its_payments_and_refunds_entries(client, english, login_as, world):
    login_as(world["here"])
    html = client.get(f"/staff/bookings/{world['ours']}").get_data(as_text=True)
    assert "Refund requested" in html and "Booking made (held)" in html


def test_a_resident_sees_their_bookings_history_without_staff_notes(client, english, login_as, room, resident,
                                                                    make_user, now):
    booking = book(resident, room, now=now)  # held, then confirmed (no online payment in this test)
    staff = make_user("staff@example.com", role=Role.STAFF, name="窓口 職員")
    record("booking", booking.id, "cancelled by staff", actor_id=staff.id, note="secret staff note",
           reason="staff reason text")
    record("booking", booking.id, "note changed", actor_id=staff.id, note="another secret")  # staff-internal
    db.session.commit()
    login_as(resident)

    html = client.get(f"/bookings/{booking.id}").get_data(as_text=True)

    assert "History" in html and "Booking made (held)" in html and "Cancelled by the facility" in html
    assert "by the facility" in html and "by you" in html
    for secret in ("secret staff note", "staff reason text", "another secret", "窓口 職員", "note changed",
                   "no online payment"):
        assert secret not in html, secret


def test_for_resident_never_carries_notes_or_names(app, room, resident, make_user, now):
    booking = book(resident, room, now=now)
    staff = make_user(role=Role.STAFF, name="窓口 職員")
    record("booking", booking.id, "cancelled for a ward reason", actor_id=staff.id, note="secret", reason="why")
    db.session.commit()
    trail = audit_trail.for_resident(booking)
    assert [e.by for e in trail][-1] == "facility"
    assert all(set(vars(e)) == {"at", "subject", "action", "by"} for e in trail)
