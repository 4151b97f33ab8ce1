"""Exemptions (減免) for the back-office checks: the authorisation matrix and the page tour need an exemption
waiting for a decision on a live booking of building A, and an exemption kind. Each is made once and committed
(nothing left open: on SQLite the test's transaction would lock out a live server)."""
from datetime import date, time, timedelta

from sqlalchemy import select

from reservations.extensions import db
from reservations.models import Booking, Exemption, ExemptionKind
from reservations.services import exemptions
from reservations.timeutil import now_utc

TOUR_KIND = "TOUR-APPROVE50"


def exemption_kind_id() -> int:
    """A 50 % kind a person may apply for, each use approved by staff."""
    kind = db.session.scalar(select(ExemptionKind).where(ExemptionKind.code == TOUR_KIND))
    if kind is None:
        kind = ExemptionKind(code=TOUR_KIND, name_ja="障害者減免", name_en="Disability", rate_pct=50,
                             legal_ground="条例第10条第3号", eligible=exemptions.INDIVIDUAL, needs_approval=True)
        db.session.add(kind)
        db.session.flush()
    kind_id = kind.id
    db.session.commit()
    return kind_id


def pending_exemption(booking_id: int) -> int:
    """An exemption waiting for staff on a booking of the same user and room as `booking_id` on 23 February 2027
    (MORNING), held until its payment deadline a month from now; returns the exemption's id."""
    from tests.helpers import calendar_booking

    kind = db.session.get(ExemptionKind, exemption_kind_id())
    like = db.session.get(Booking, booking_id)
    exemption = db.session.scalar(select(Exemption).join(Booking, Booking.id == Exemption.booking_id)
                                  .where(Booking.room_id == like.room_id, Exemption.kind_id == kind.id))
    if exemption is None:
        now = now_utc()
        booking = calendar_booking(like.user, like.room, date(2027, 2, 23), state="held", pay_mode="deadline",
                                   hold_expires_at=now + timedelta(days=30))
        exemption = exemptions.attach(booking, kind, actor=like.user, now=now, note="区の後援行事")
    exemption_id = exemption.id
    db.session.commit()
    return exemption_id


def pending_exemption_booking(booking_id: int) -> int:
    """The booking of pending_exemption."""
    booking = db.session.get(Exemption, pending_exemption(booking_id)).booking_id
    db.session.commit()
    return booking


# -- the resident tour (tests/e2e/tour.py) -------------------------------------------------------------------
# Codes of digits only: a Japanese page shows no Latin-letter word outside the catalog (test_language.py).

def tour_group_kind() -> int:
    """A 50 % reduction a general group may use at once, with its English name (for the English walk)."""
    kind = db.session.scalar(select(ExemptionKind).where(ExemptionKind.code == "10-2"))
    if kind is None:
        kind = ExemptionKind(code="10-2", name_ja="団体減免", name_en="Group reduction", rate_pct=50,
                             legal_ground="条例第10条第2号", eligible="general", needs_approval=False)
        db.session.add(kind)
        db.session.flush()
    kind_id = kind.id
    db.session.commit()
    return kind_id


def tour_pending_booking(user_id: int, court_id: int, day: date) -> int:
    """The tour resident's booking of the court on `day` at 14:00 with a 50 % exemption waiting for staff, held
    until its payment deadline. Written as it stands (the tour's resident is at the booking cap); made once."""
    from reservations.models import BookingState, Room, User
    from reservations.services.deadline import payment_deadline
    from reservations.services.pricing import quote
    from reservations.services.rules import hourly_slot

    court, user = db.session.get(Room, court_id), db.session.get(User, user_id)
    slot = hourly_slot(court, day, time(14), 60)
    booking = db.session.scalar(select(Booking).where(Booking.room_id == court_id, Booking.start_at == slot.start_at))
    if booking is None:
        kind = db.session.scalar(select(ExemptionKind).where(ExemptionKind.code == "10-3"))
        if kind is None:
            kind = ExemptionKind(code="10-3", name_ja="障害者減免", name_en="Disability", rate_pct=50,
                                 legal_ground="条例第10条第3号", eligible=exemptions.INDIVIDUAL, needs_approval=True)
            db.session.add(kind)
        price = quote(court, slot, user.residency)
        booking = Booking(user_id=user.id, room_id=court.id, start_at=slot.start_at, end_at=slot.end_at,
                          state=BookingState.HELD, hold_expires_at=payment_deadline(court, slot.start_at),
                          pay_mode="deadline", price=price.total, price_detail=price.as_detail(),
                          residency=user.residency)
        db.session.add(booking)
        db.session.flush()
        exemptions.attach(booking, kind, actor=user, now=now_utc())
    booking_id = booking.id
    db.session.commit()
    return booking_id
