"""Exemptions (減免): a reduction of a booking's fee that the ordinance allows, recorded with its legal ground.

One Exemption row per booking (models/groups.py). Without approval the price is reduced at once; with
approval the booking waits, held and not charged ("exemption pending"), until staff approve (the reduced
price is due; nothing at 100 %) or refuse it (the full fee is due by the payment deadline). The booking's
price is always what is due now: the full fee while pending or refused, the reduced fee once applied.
"""
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..models import Booking, BookingState, Exemption, ExemptionKind, ExemptionState, Group, User, record

INDIVIDUAL = "individual"  # ExemptionKind.eligible: a person booking as themselves


def eligible_kinds(group: Group | None) -> list[ExemptionKind]:
    """The active kinds a booking as `group` (or as a person, None) may apply for."""
    who = group.category if group is not None else INDIVIDUAL
    kinds = db.session.scalars(select(ExemptionKind).where(ExemptionKind.active.is_(True))
                               .order_by(ExemptionKind.code)).all()
    return [k for k in kinds if who in k.eligible_list]


def reduction_of(kind: ExemptionKind, full_fee: int) -> int:
    """The yen taken off: the rate of the full fee, rounded down to the yen (100 % is the whole fee)."""
    return full_fee * kind.rate_pct // 100


def decide_by(deadline: datetime, now: datetime) -> datetime:
    """Staff decide within EXEMPTION_DECISION_DAYS, and never after the booking's payment deadline."""
    return min(now + timedelta(days=current_app.config["EXEMPTION_DECISION_DAYS"]), deadline)


def attach(booking: Booking, kind: ExemptionKind, *, actor: User, now: datetime, note: str = "") -> Exemption:
    """Apply `kind` to a new booking (its price is the full fee): reduce it now, or wait for approval."""
    full = booking.price
    exemption = Exemption(booking_id=booking.id, kind_id=kind.id, code=kind.code, rate_pct=kind.rate_pct,
                          legal_ground=kind.legal_ground, full_fee=full, reduction=reduction_of(kind, full),
                          applicant_note=note, requested_by_id=actor.id, created_at=now)
    if kind.needs_approval:
        exemption.state = ExemptionState.PENDING
        exemption.decide_by = decide_by(booking.hold_expires_at or now, now)
    else:
        exemption.state = ExemptionState.APPLIED
        exemption.decided_at = now
        booking.price = full - exemption.reduction
    booking.exemption = exemption
    db.session.add(exemption)
    db.session.flush()
    _detail(booking, exemption)
    record("booking", booking.id, "exemption requested" if kind.needs_approval else "exemption applied",
           actor_id=actor.id, code=kind.code, rate_pct=kind.rate_pct, full_fee=full, reduction=exemption.reduction)
    return exemption


def _detail(booking: Booking, exemption: Exemption) -> None:
    detail = dict(booking.price_detail or {})
    detail["exemption"] = {"code": exemption.code, "rate_pct": exemption.rate_pct, "full_fee": exemption.full_fee,
                           "reduction": exemption.reduction, "state": exemption.state}
    booking.price_detail = detail


def is_pending(booking: Booking) -> bool:
    """Held for a staff decision on its exemption: nothing may be charged yet."""
    return booking.exemption is not None and booking.exemption.state == ExemptionState.PENDING


def approve(exemption: Exemption, *, staff: User, now: datetime, reason: str = "") -> None:
    """The reduced fee is due now; a booking reduced to nothing is confirmed (as a free booking is)."""
    from .booking import confirm  # booking builds on this module

    exemption.state, exemption.decided_by_id, exemption.decided_at, exemption.reason = (
        ExemptionState.APPLIED, staff.id, now, reason)
    booking = exemption.booking
    booking.price = exemption.full_fee - exemption.reduction
    _detail(booking, exemption)
    record("booking", booking.id, "exemption approved", actor_id=staff.id, code=exemption.code,
           reduction=exemption.reduction, reason=reason)
    if booking.price == 0 and booking.state == BookingState.HELD and booking.hold_is_live(now):
        confirm(booking, actor_id=staff.id, reason="exempted in full")


def refuse(exemption: Exemption, *, staff: User, now: datetime, reason: str) -> None:
    """The full fee is due by the booking's payment deadline."""
    if not reason.strip():
        raise ValueError("a refusal needs a reason")
    exemption.state, exemption.decided_by_id, exemption.decided_at, exemption.reason = (
        ExemptionState.REFUSED, staff.id, now, reason.strip())
    booking = exemption.booking
    booking.price = exemption.full_fee
    _detail(booking, exemption)
    record("booking", booking.id, "exemption refused", actor_id=staff.id, code=exemption.code, reason=reason)
