"""Exemptions (減免) from the resident's and the staff's side (issue 10, section 2 and test 11).

A resident books as themselves or for one of their groups, and may apply for an exemption that party may use:
without approval the price is reduced at once (what the card is charged); with approval the booking is held
until its payment deadline and not charged while staff decide. Approved, the reduced price is due (nothing at
100 %, and the booking is confirmed); refused, the full price is due by the same deadline. Staff decide on the
bookings of their buildings; the kinds are the ward's configuration, changed by admin only.
"""
import re
from datetime import UTC, date, datetime, timedelta
from html import unescape

import pytest
import time_machine
from sqlalchemy import func, select

from reservations.extensions import db
from reservations.models import (
    AuditEntry,
    Booking,
    BookingState,
    Building,
    Exemption,
    ExemptionKind,
    ExemptionState,
    Group,
    GroupStatus,
    Payment,
    PaymentState,
    Residency,
    Role,
)
from reservations.services import checkout, exemptions
from reservations.services.booking import reserve
from reservations.services.deadline import payment_deadline
from reservations.services.errors import BookingError
from reservations.services.rules import division_slot
from reservations.timeutil import TOKYO, business_date, now_utc
from tests.helpers import api, audit_actions, booking_day, fetch_intent, outbox

BASE_URL = "http://127.0.0.1:5000"  # PUBLIC_BASE_URL in test mode: every mailed link is built on it


# -- what the tests share -------------------------------------------------------------------------------

def make_kind(code="WELFARE50", rate=50, eligible="welfare", *, approval=False, active=True, **kw) -> ExemptionKind:
    kind = ExemptionKind(code=code, name_ja=kw.pop("name_ja", "福祉団体減免"),
                         name_en=kw.pop("name_en", "Welfare groups"), rate_pct=rate,
                         legal_ground=kw.pop("legal_ground", "条例第10条第2号"), eligible=eligible,
                         needs_approval=approval, active=active, **kw)
    db.session.add(kind)
    db.session.commit()
    return kind


def make_group(representative, *, category="welfare", members=5, residents=5, name="ひまわり会",
               status=GroupStatus.ACTIVE) -> Group:
    group = Group(name=name, representative_id=representative.id, category=category, member_count=members,
                  resident_count=residents, status=status,
                  valid_until=business_date(now_utc()) + timedelta(days=200) if status == GroupStatus.ACTIVE else None)
    db.session.add(group)
    db.session.commit()
    return group


def slot_of(room, code="MORNING", day=None):
    return division_slot(room, day or booking_day(), [code])


def page(response) -> str:
    return unescape(response.get_data(as_text=True))


def review_url(room, code="MORNING", day=None, **choice) -> str:
    args = "".join(f"&{k}={v}" for k, v in choice.items())
    return f"/rooms/{room.id}/book?date={(day or booking_day()).isoformat()}&divisions={code}{args}"


def reserve_data(price, code="MORNING", day=None, **choice) -> dict:
    return {"date": (day or booking_day()).isoformat(), "divisions": [code], "expected_price": str(price), **choice}


def read_english(client) -> None:
    with client.session_transaction() as sess:
        sess["lang"] = "en"


@pytest.fixture
def signed_in(client, resident, login_as):
    login_as(resident)
    read_english(client)
    return resident


@pytest.fixture
def staff(make_user):
    return make_user("staff@example.com", role=Role.STAFF, name="窓口 職員")


@pytest.fixture
def needs_approval(app):
    """A 50 % reduction a person may apply for, each use approved by staff."""
    return make_kind("DISABILITY50", 50, exemptions.INDIVIDUAL, approval=True, name_ja="障害者減免",
                     name_en="Disability", legal_ground="条例第10条第3号")


def pending_booking(resident, room, kind, now, code="MORNING"):
    booking = reserve(resident, room, slot_of(room, code), now=now, exemption_kind=kind, exemption_note="区の後援行事")
    db.session.commit()
    return booking


def as_staff(client, login_as, user):
    login_as(user)
    read_english(client)


def decide(client, exemption_id, verb, reason=""):
    return client.post(f"/staff/exemptions/{exemption_id}/{verb}", data={f"{verb}{exemption_id}-reason": reason})


# -- no approval: reduced at once ----------------------------------------------------------------------------

@pytest.mark.payments
def test_a_50_percent_exemption_halves_what_the_card_is_charged(app, localstripe, room, resident, now):
    group = make_group(resident)
    kind = make_kind()

    booking = reserve(resident, room, slot_of(room), now=now, group=group, exemption_kind=kind)
    db.session.commit()

    exemption = booking.exemption
    assert (exemption.state, exemption.code, exemption.rate_pct, exemption.legal_ground) == (
        ExemptionState.APPLIED, "WELFARE50", 50, "条例第10条第2号")
    assert (exemption.full_fee, exemption.reduction, exemption.amount_due) == (2800, 1400, 1400)
    assert booking.price == 1400 and booking.payment.amount == 1400 and booking.group_id == group.id
    outcome, _intent = checkout.pay(booking.payment, token=localstripe.card_token(), now=now)
    db.session.commit()
    assert outcome == "confirmed" and booking.state == BookingState.CONFIRMED
    assert fetch_intent(localstripe, booking.payment.intent_id)["amount"] == 1400  # what the card was charged
    assert booking.payment.captured_amount == 1400
    assert ("exemption applied", "") in audit_actions("booking", booking.id)


@pytest.mark.payments
def test_the_review_page_shows_what_will_be_charged_and_reserving_charges_it(
        app, client, signed_in, localstripe, room):
    group = make_group(signed_in)
    kind = make_kind()

    shown = page(client.get(review_url(room, book_as=group.id, exemption=kind.id)))

    assert 'name="book_as"' in shown and "ひまわり会" in shown and "WELFARE50" in shown
    assert "Full fee" in shown and "¥2,800" in shown and "-¥1,400" in shown
    assert "Reserve and pay ¥1,400" in shown
    assert f'name="book_as" value="{group.id}"' in shown and f'name="exemption" value="{kind.id}"' in shown
    reserved = client.post(f"/rooms/{room.id}/book", data=reserve_data(2800, book_as=group.id, exemption=kind.id))
    booking = db.session.scalars(select(Booking)).one()
    assert reserved.headers["Location"] == f"/bookings/{booking.id}/pay"
    assert booking.price == 1400 and booking.payment.amount == 1400 and booking.group_id == group.id
    pay_page = page(client.get(f"/bookings/{booking.id}/pay"))
    assert "Pay ¥1,400" in pay_page
    detail = page(client.get(f"/bookings/{booking.id}"))
    assert "ひまわり会" in detail and "WELFARE50" in detail and "-¥1,400" in detail and "Amount due" in detail


def test_without_exemptions_or_groups_the_review_page_offers_no_choice(client, signed_in, room):
    shown = page(client.get(review_url(room)))
    assert 'name="book_as"' not in shown and 'name="exemption"' not in shown and "Reserve for ¥2,800" in shown


# -- with approval: held, not charged --------------------------------------------------------------------------

@pytest.mark.payments
def test_an_exemption_needing_approval_is_held_not_charged_and_cannot_be_paid(
        app, client, signed_in, localstripe, room, needs_approval):
    shown = page(client.get(review_url(room, exemption=needs_approval.id)))
    assert "This exemption needs the facility's approval" in shown and "Reserve and apply for the exemption" in shown
    assert 'name="exemption_note"' in shown

    reserved = client.post(f"/rooms/{room.id}/book",
                           data=reserve_data(2800, exemption=needs_approval.id, exemption_note="区の後援行事"))

    booking = db.session.scalars(select(Booking)).one()
    assert reserved.headers["Location"] == f"/bookings/{booking.id}"
    exemption = booking.exemption
    deadline = payment_deadline(room, booking.start_at)
    assert (booking.state, booking.pay_mode, booking.hold_expires_at) == (BookingState.HELD, "deadline", deadline)
    assert exemption.state == ExemptionState.PENDING and exemption.applicant_note == "区の後援行事"
    assert exemption.decide_by == min(booking.created_at + timedelta(days=7), deadline)
    assert booking.price == 2800 and booking.payment is None  # nothing charged, nothing opened
    with pytest.raises(BookingError) as refused:
        checkout.start_checkout(booking)
    assert refused.value.code == "exemption_pending"

    detail = page(client.get(f"/bookings/{booking.id}"))
    assert "Exemption pending" in detail and "decides on your exemption by" in detail
    assert f"/bookings/{booking.id}/pay" not in detail and "Due if approved" in detail and "¥1,400" in detail
    mine = page(client.get("/bookings"))
    assert "Exemption pending" in mine and f"/bookings/{booking.id}/pay" not in mine
    pay_page = client.get(f"/bookings/{booking.id}/pay")
    assert pay_page.status_code == 302 and pay_page.headers["Location"] == f"/bookings/{booking.id}"
    assert BookingError("exemption_pending").message in page(client.get(f"/bookings/{booking.id}"))
    paid = client.post(f"/bookings/{booking.id}/pay", json={"token": localstripe.card_token()})
    assert paid.status_code == 409 and paid.json["message"] == BookingError("exemption_pending").message
    done = client.post(f"/bookings/{booking.id}/pay/complete")
    assert done.status_code == 409
    db.session.rollback()
    assert db.session.scalar(select(func.count(Payment.id))) == 0
    assert api(localstripe, "GET", "/v1/payment_intents", params={"limit": 100}).json()["data"] == []


@pytest.mark.payments
def test_approved_the_reduced_price_is_due_by_the_same_deadline_and_paid(
        app, client, login_as, localstripe, room, resident, staff, needs_approval, now):
    booking = pending_booking(resident, room, needs_approval, now)
    deadline = booking.hold_expires_at
    as_staff(client, login_as, staff)

    response = decide(client, booking.exemption.id, "approve", "後援確認済み")

    assert response.status_code == 303
    db.session.expire_all()
    booking = db.session.get(Booking, booking.id)
    assert booking.exemption.state == ExemptionState.APPLIED and booking.exemption.decided_by_id == staff.id
    assert (booking.state, booking.price, booking.hold_expires_at) == (BookingState.HELD, 1400, deadline)
    assert booking.payment.amount == 1400 and booking.payment.state == PaymentState.NEW
    assert ("exemption approved", "後援確認済み") in audit_actions("booking", booking.id)
    [mail] = outbox(app)
    body = mail.get_body(("plain",)).get_content()
    assert mail["To"] == resident.email and "¥1,400" in body and "DISABILITY50" in body
    assert f"{BASE_URL}/bookings/{booking.id}/pay" in body

    outcome, _intent = checkout.pay(booking.payment, token=localstripe.card_token(), now=now)
    db.session.commit()
    assert outcome == "confirmed" and fetch_intent(localstripe, booking.payment.intent_id)["amount"] == 1400


@pytest.mark.payments
def test_a_100_percent_exemption_approved_confirms_the_booking_with_nothing_to_pay(
        app, client, login_as, localstripe, room, resident, staff, now):
    ward = make_kind("WARD100", 100, exemptions.INDIVIDUAL, approval=True, name_ja="区主催行事",
                     name_en="The ward's own events", legal_ground="条例第10条第1号")
    booking = pending_booking(resident, room, ward, now)
    as_staff(client, login_as, staff)

    decide(client, booking.exemption.id, "approve")

    db.session.expire_all()
    booking = db.session.get(Booking, booking.id)
    assert (booking.state, booking.price, booking.payment) == (BookingState.CONFIRMED, 0, None)
    [mail] = outbox(app)
    assert "/pay" not in mail.get_body(("plain",)).get_content()
    login_as(resident)
    detail = page(client.get(f"/bookings/{booking.id}"))
    assert "nothing to pay" in detail and f"/bookings/{booking.id}/pay" not in detail


@pytest.mark.payments
def test_refused_the_full_price_is_due_by_the_same_deadline_and_payable(
        app, client, login_as, localstripe, room, resident, staff, needs_approval, now):
    booking = pending_booking(resident, room, needs_approval, now)
    deadline = booking.hold_expires_at
    as_staff(client, login_as, staff)

    assert decide(client, booking.exemption.id, "refuse", "").status_code == 422  # a refusal needs its reason
    db.session.expire_all()
    assert db.session.get(Exemption, booking.exemption.id).state == ExemptionState.PENDING
    response = decide(client, booking.exemption.id, "refuse", "対象外の行事です")

    assert response.status_code == 303
    db.session.expire_all()
    booking = db.session.get(Booking, booking.id)
    assert booking.exemption.state == ExemptionState.REFUSED and booking.exemption.reason == "対象外の行事です"
    assert (booking.state, booking.price, booking.hold_expires_at) == (BookingState.HELD, 2800, deadline)
    assert booking.exemption.amount_due == 2800 and booking.payment.amount == 2800
    assert ("exemption refused", "対象外の行事です") in audit_actions("booking", booking.id)
    [mail] = outbox(app)
    body = mail.get_body(("plain",)).get_content()
    assert "対象外の行事です" in body and "¥2,800" in body and f"{BASE_URL}/bookings/{booking.id}/pay" in body

    login_as(resident)
    read_english(client)
    detail = page(client.get(f"/bookings/{booking.id}"))
    assert "Exemption not approved" in detail and "対象外の行事です" in detail
    assert "The full fee of ¥2,800 is due by" in detail and f"/bookings/{booking.id}/pay" in detail
    assert client.get(f"/bookings/{booking.id}/pay").status_code == 200
    outcome, _intent = checkout.pay(booking.payment, token=localstripe.card_token(), now=now)
    db.session.commit()
    assert outcome == "confirmed" and fetch_intent(localstripe, booking.payment.intent_id)["amount"] == 2800


def test_a_decision_is_taken_once_and_only_on_a_held_booking(app, client, login_as, room, resident, staff,
                                                             needs_approval, now):
    booking = pending_booking(resident, room, needs_approval, now)
    as_staff(client, login_as, staff)
    decide(client, booking.exemption.id, "approve")

    again = decide(client, booking.exemption.id, "refuse", "やはり対象外")

    assert again.status_code == 303
    assert "already been decided" in page(client.get("/staff/exemptions/"))
    db.session.expire_all()
    assert db.session.get(Exemption, booking.exemption.id).state == ExemptionState.APPLIED
    assert [a for a, _ in audit_actions("booking", booking.id) if a.startswith("exemption")] == [
        "exemption requested", "exemption approved"]

    lapsed = pending_booking(resident, room, needs_approval, now, code="AFTERNOON")
    with time_machine.travel(lapsed.hold_expires_at + timedelta(minutes=1), tick=False):
        as_staff(client, login_as, staff)  # signed in again: the session would have lapsed by then
        assert decide(client, lapsed.exemption.id, "approve").status_code == 303
        assert "no longer held" in page(client.get("/staff/exemptions/"))
    db.session.expire_all()
    assert db.session.get(Exemption, lapsed.exemption.id).state == ExemptionState.PENDING


# -- who may use what -------------------------------------------------------------------------------------

def test_a_person_cannot_use_a_welfare_group_kind(app, client, signed_in, room, now):
    welfare = make_kind()
    with pytest.raises(BookingError) as refused:
        reserve(signed_in, room, slot_of(room), now=now, exemption_kind=welfare)
    assert refused.value.code == "exemption_not_eligible"
    db.session.rollback()

    shown = page(client.get(review_url(room)))
    assert "WELFARE50" not in shown  # not offered to a person
    response = client.post(f"/rooms/{room.id}/book",
                           data=reserve_data(2800, exemption=welfare.id, exemption_note="福祉の集い"))
    assert response.status_code == 422
    assert BookingError("exemption_not_eligible").message in page(response)
    assert db.session.scalar(select(func.count(Booking.id))) == 0


def test_an_inactive_kind_is_not_offered_nor_accepted(app, client, signed_in, room, now):
    old = make_kind("OLD50", 50, exemptions.INDIVIDUAL, active=False)
    assert exemptions.eligible_kinds(None) == []
    response = client.post(f"/rooms/{room.id}/book", data=reserve_data(2800, exemption=old.id))
    assert response.status_code == 422 and BookingError("exemption_not_eligible").message in page(response)


def test_what_the_resident_typed_is_kept_when_the_booking_is_refused(app, client, signed_in, room, needs_approval):
    response = client.post(f"/rooms/{room.id}/book",
                           data=reserve_data(2800, exemption="abc", exemption_note="区の後援行事です"))

    assert response.status_code == 422
    html = page(response)
    assert BookingError("exemption_not_eligible").message in html
    # Carried to the next "show the price", and from there into the reserve form's box.
    assert 'type="hidden" name="exemption_note" value="区の後援行事です"' in html
    again = page(client.get(review_url(room, exemption=needs_approval.id, exemption_note="区の後援行事です")))
    assert re.search(r'<textarea[^>]*name="exemption_note"[^>]*>\s*区の後援行事です</textarea>', again)

    long_note = client.post(f"/rooms/{room.id}/book",
                            data=reserve_data(2800, exemption=needs_approval.id, exemption_note="あ" * 1001))
    assert long_note.status_code == 422
    html = page(long_note)
    assert "Use at most 1000 characters" in html and "あ" * 1001 in html  # the note kept in its box
    assert db.session.scalar(select(func.count(Booking.id))) == 0


def test_only_a_member_books_for_a_group(app, client, signed_in, room, make_user, now):
    stranger = make_user("stranger@example.com")
    theirs = make_group(stranger, name="よその会")
    with pytest.raises(BookingError) as refused:
        reserve(signed_in, room, slot_of(room), now=now, group=theirs)
    assert refused.value.code == "not_group_member"
    db.session.rollback()

    shown = page(client.get(review_url(room, book_as=theirs.id)))
    assert BookingError("not_group_member").message in shown
    assert f'<form method="post" action="/rooms/{room.id}/book">' not in shown  # no reserving until the choice is fixed
    response = client.post(f"/rooms/{room.id}/book", data=reserve_data(2800, book_as=theirs.id))
    assert response.status_code == 422 and BookingError("not_group_member").message in page(response)
    junk = client.post(f"/rooms/{room.id}/book", data=reserve_data(2800, book_as="99999999999999"))
    assert junk.status_code == 422
    assert db.session.scalar(select(func.count(Booking.id))) == 0


def test_an_approval_too_close_to_the_day_of_use_is_refused_with_a_message(app, client, resident, login_as, room,
                                                                          needs_approval):
    at = datetime(2027, 1, 12, 10, 0, tzinfo=TOKYO).astimezone(UTC)  # a Tuesday
    day = date(2027, 1, 14)  # Thursday: its payment deadline (3 days before) has passed
    with time_machine.travel(at, tick=False):
        login_as(resident)
        read_english(client)
        shown = page(client.get(review_url(room, day=day, exemption=needs_approval.id)))
        assert BookingError("exemption_too_late").message in shown
        response = client.post(f"/rooms/{room.id}/book", data=reserve_data(2800, day=day, exemption=needs_approval.id))
    assert response.status_code == 422 and BookingError("exemption_too_late").message in page(response)
    assert db.session.scalar(select(func.count(Booking.id))) == 0


def test_a_group_booking_is_priced_at_the_group_fee_class(app, client, login_as, room, make_user, now):
    outsider = make_user("outsider@example.com", residency=Residency.OUTSIDE)
    login_as(outsider)
    read_english(client)
    resident_group = make_group(outsider, category="general", members=5, residents=4, name="区民の会")

    assert page(client.get(review_url(room))).count("¥4,200") >= 1  # as themselves: the non-resident rate
    shown = page(client.get(review_url(room, book_as=resident_group.id)))
    assert "Reserve for ¥2,800" in shown and "the group's fee class" in shown
    client.post(f"/rooms/{room.id}/book", data=reserve_data(2800, book_as=resident_group.id))
    booking = db.session.scalars(select(Booking)).one()
    assert (booking.price, booking.residency, booking.group_id) == (2800, Residency.RESIDENT, resident_group.id)
    mine = page(client.get("/bookings"))
    assert "区民の会" in mine

    member = make_user("member@example.com", residency=Residency.RESIDENT)
    outside_group = make_group(member, category="general", members=5, residents=1, name="区外の会")
    booked = reserve(member, room, slot_of(room, "AFTERNOON"), now=now, group=outside_group)
    assert (booked.price, booked.residency) == (3600 * 150 // 100, Residency.OUTSIDE)


def test_a_stale_price_for_the_group_is_refused_and_the_choice_kept(app, client, login_as, room, make_user):
    outsider = make_user("outsider@example.com", residency=Residency.OUTSIDE)
    login_as(outsider)
    read_english(client)
    group = make_group(outsider, category="general", members=5, residents=4)
    response = client.post(f"/rooms/{room.id}/book", data=reserve_data(4200, book_as=group.id))
    assert response.status_code == 302 and f"book_as={group.id}" in response.headers["Location"]


# -- the staff's pages ---------------------------------------------------------------------------------------

def test_staff_see_the_exemptions_of_their_buildings_oldest_first_overdue_marked(
        app, client, login_as, room, make_room, resident, make_user, staff, needs_approval, now):
    first = pending_booking(resident, room, needs_approval, now - timedelta(minutes=5))
    second = pending_booking(make_user(), room, needs_approval, now, code="AFTERNOON")
    elsewhere = make_user("elsewhere@example.com", role=Role.STAFF, buildings=[Building(name="別の会館")])
    as_staff(client, login_as, staff)

    listing = page(client.get("/staff/exemptions/"))
    assert listing.index(f"exemption-{first.exemption.id}") < listing.index(f"exemption-{second.exemption.id}")
    assert "DISABILITY50" in listing and "区の後援行事" in listing and "Overdue" not in listing
    assert "Exemptions waiting for a decision" in page(client.get("/staff/"))
    booking_page = page(client.get(f"/staff/bookings/{first.id}"))
    assert f'name="approve{first.exemption.id}-reason"' in booking_page and "DISABILITY50" in booking_page
    with time_machine.travel(first.exemption.decide_by + timedelta(minutes=1), tick=False):
        as_staff(client, login_as, staff)
        assert "Overdue" in page(client.get("/staff/exemptions/"))

    as_staff(client, login_as, elsewhere)
    assert "DISABILITY50" not in page(client.get("/staff/exemptions/"))
    assert decide(client, first.exemption.id, "approve").status_code == 404
    assert decide(client, first.exemption.id, "refuse", "対象外").status_code == 404
    assert client.get(f"/staff/bookings/{first.id}").status_code == 404
    db.session.expire_all()
    assert db.session.get(Exemption, first.exemption.id).state == ExemptionState.PENDING

    as_staff(client, login_as, make_user("admin@example.com", role=Role.ADMIN))
    assert "DISABILITY50" in page(client.get("/staff/exemptions/"))


def test_residents_do_not_reach_the_staff_decisions(app, client, signed_in, room, needs_approval, now):
    booking = pending_booking(signed_in, room, needs_approval, now)
    assert decide(client, booking.exemption.id, "approve").status_code == 403
    assert client.get("/staff/exemptions/").status_code == 403


# -- the kinds ---------------------------------------------------------------------------------------------

KIND_FORM = {"code": "welfare50", "name_ja": "福祉団体減免", "name_en": "Welfare groups", "rate_pct": "50",
             "legal_ground": "条例第10条第2号", "eligible": ["welfare", "individual"], "needs_approval": "y",
             "active": "y"}


def test_staff_see_the_kinds_and_only_admin_change_them(app, client, login_as, staff, make_user):
    make_kind("WARD100", 100, "ward")
    as_staff(client, login_as, staff)
    listing = page(client.get("/staff/exemptions/kinds"))
    assert "WARD100" in listing and "/admin/exemptions/kinds/new" not in listing
    assert client.get("/admin/exemptions/kinds/new").status_code == 403
    assert client.post("/admin/exemptions/kinds/new", data=KIND_FORM).status_code == 403
    assert db.session.scalar(select(func.count(ExemptionKind.id))) == 1

    admin = make_user("admin@example.com", role=Role.ADMIN)
    as_staff(client, login_as, admin)
    assert "/admin/exemptions/kinds/new" in page(client.get("/staff/exemptions/kinds"))
    response = client.post("/admin/exemptions/kinds/new", data=KIND_FORM)

    assert response.status_code == 303
    kind = db.session.scalar(select(ExemptionKind).where(ExemptionKind.code == "WELFARE50"))
    assert (kind.rate_pct, kind.eligible, kind.needs_approval, kind.active) == (50, "welfare,individual", True, True)
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.subject == "exemption_kind"))
    assert (entry.action, entry.actor_id, entry.subject_id) == ("created", admin.id, kind.id)


def test_editing_a_kind_leaves_the_bookings_already_exempted_as_they_were(app, client, login_as, room, resident,
                                                                          make_user, now):
    kind = make_kind("SELF50", 50, exemptions.INDIVIDUAL)
    booking = reserve(resident, room, slot_of(room), now=now, exemption_kind=kind)
    db.session.commit()
    as_staff(client, login_as, make_user("admin@example.com", role=Role.ADMIN))
    form = page(client.get(f"/admin/exemptions/kinds/{kind.id}"))
    assert 'value="SELF50"' in form and re.search(r'<input checked[^>]*value="individual"', form)
    assert not re.search(r'<input checked[^>]*value="welfare"', form)

    response = client.post(f"/admin/exemptions/kinds/{kind.id}",
                           data={**KIND_FORM, "code": "SELF30", "rate_pct": "30", "eligible": ["individual"]})

    assert response.status_code == 303
    db.session.expire_all()
    kind = db.session.get(ExemptionKind, kind.id)
    assert (kind.code, kind.rate_pct, kind.needs_approval) == ("SELF30", 30, True)
    booking = db.session.get(Booking, booking.id)
    assert (booking.exemption.code, booking.exemption.rate_pct, booking.price) == ("SELF50", 50, 1400)
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.subject == "exemption_kind",
                                                       AuditEntry.action == "updated"))
    assert entry.data["changes"]["rate_pct"] == [50, 30]
    unchanged = client.post(f"/admin/exemptions/kinds/{kind.id}",
                            data={**KIND_FORM, "code": "SELF30", "rate_pct": "30", "eligible": ["individual"]})
    assert unchanged.status_code == 303
    assert db.session.scalar(select(func.count(AuditEntry.id)).where(AuditEntry.subject == "exemption_kind")) == 1


@pytest.mark.parametrize("change, message", [
    ({"rate_pct": "abc"}, "Enter a whole number"),
    ({"rate_pct": "0"}, "Enter a number from 1 to 100"),
    ({"rate_pct": "101"}, "Enter a number from 1 to 100"),
    ({"rate_pct": ""}, "Enter the reduction"),
    ({"legal_ground": "  "}, "Enter the article of the ordinance"),
    ({"name_ja": ""}, "Enter the name in Japanese"),
    ({"code": ""}, "Enter a code"),
    ({"code": "BAD CODE!"}, "Use capital letters"),
    ({"code": "X" * 33}, "Use at most 32 characters"),
    ({"eligible": []}, "Choose at least one kind of party"),
    ({"eligible": ["martians"]}, "is not a valid choice"),
    ({"name_en": "a\x00b"}, "control characters"),
    ({"code": "WARD100"}, "Another exemption kind already has this code"),
    ({"code": "ｗａｒｄ１００"}, "Another exemption kind already has this code"),  # typed full-width
])
def test_a_kind_with_bad_input_is_not_saved_and_says_why(app, client, login_as, make_user, change, message):
    make_kind("WARD100", 100, "ward")
    as_staff(client, login_as, make_user("admin@example.com", role=Role.ADMIN))

    response = client.post("/admin/exemptions/kinds/new", data={**KIND_FORM, **change})

    assert response.status_code == 422
    assert message in page(response)
    db.session.rollback()
    assert db.session.scalar(select(func.count(ExemptionKind.id))) == 1


def test_editing_a_kind_to_another_kinds_code_is_refused(app, client, login_as, make_user):
    make_kind("WARD100", 100, "ward")
    other = make_kind("SCHOOL50", 50, "school")
    as_staff(client, login_as, make_user("admin@example.com", role=Role.ADMIN))
    response = client.post(f"/admin/exemptions/kinds/{other.id}", data={**KIND_FORM, "code": "WARD100"})
    assert response.status_code == 422 and "Another exemption kind already has this code" in page(response)
    assert client.get("/admin/exemptions/kinds/999999").status_code == 404
    db.session.expire_all()
    assert db.session.get(ExemptionKind, other.id).code == "SCHOOL50"


def test_only_staff_of_the_building_decide_in_the_service_too(app, room, resident, make_user, needs_approval, now):
    booking = pending_booking(resident, room, needs_approval, now)
    elsewhere = make_user("elsewhere@example.com", role=Role.STAFF, buildings=[Building(name="別の会館")])
    for who in (resident, elsewhere):
        with pytest.raises(exemptions.ExemptionError) as refused:
            exemptions.approve(booking.exemption, staff=who, now=now)
        assert refused.value.code == "staff_only"
    assert booking.exemption.state == ExemptionState.PENDING
    staff_here = make_user("here@example.com", role=Role.STAFF)
    assert exemptions.waiting_count(staff_here, now) == 1 and exemptions.waiting_count(elsewhere, now) == 0
    assert [e.id for e in exemptions.waiting(staff_here, now)] == [booking.exemption.id]
