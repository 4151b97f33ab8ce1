"""Cases staff must look at: a payment that arrived after its slot was taken, a refund that failed, a dispute."""
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from ..backoffice import scoped
from ..extensions import db
from ..models import AttentionCase, Booking, Dispute, Payment, Refund, Room, User, record
from ..timeutil import now_utc

# What each kind of case means, for the staff page.
CASE_LABELS = {
    "paid_after_slot_taken": _l("Paid after the slot was taken; the money was returned automatically"),
    "refund_failed": _l("Refund failed: the money did not go back to the card"),
    "refund_cancelled": _l("Refund cancelled at the payment provider: the money did not go back"),
    "refund_retries_exhausted": _l("Refund not sent: the payment service could not be reached after every retry"),
    "capture_failed": _l("Confirmed, but the payment could not be taken"),
    "dispute_opened": _l("Dispute (chargeback) opened by the resident's bank"),
    "dispute_closed": _l("Dispute (chargeback) closed"),
}


REFUND_STATE_LABELS = {
    "pending": _l("Being processed"),
    "succeeded": _l("Refunded"),
    "failed": _l("Failed"),
    "cancelled": _l("Cancelled"),
}


def case_label(reason: str) -> str:
    return str(CASE_LABELS.get(reason, reason))


def refund_state_label(state: str) -> str:
    return str(REFUND_STATE_LABELS.get(state, state))


def open_case(payment: Payment, reason: str, detail: str = "", *, refund: Refund | None = None,
              dispute: Dispute | None = None) -> AttentionCase:
    """Put a case about one of our payments on the staff list (the caller's transaction commits it)."""
    case = AttentionCase(booking_id=payment.booking_id, payment_id=payment.id, reason=reason, detail=detail,
                         building_id=payment.booking.room.building_id,
                         refund_id=refund.id if refund else None, dispute_id=dispute.id if dispute else None)
    db.session.add(case)
    db.session.flush()
    record("attention_case", case.id, "opened", reason=reason, booking_id=payment.booking_id, payment_id=payment.id)
    return case


def open_booking_case(booking: Booking, reason: str, detail: str = "") -> AttentionCase:
    """Put a case about a booking (not about money) on its building's list, e.g. a closure that hits it."""
    case = AttentionCase(booking_id=booking.id, payment_id=booking.payment.id if booking.payment else None,
                         building_id=booking.room.building_id, reason=reason, detail=detail)
    db.session.add(case)
    db.session.flush()
    record("attention_case", case.id, "opened", reason=reason, booking_id=booking.id)
    return case


def case_building_id(case: AttentionCase) -> int | None:
    """The building a case belongs to; None (admin only) for one that names nothing we know."""
    return case.building_id


def _open_in_scope(statement, user: User):
    """`statement` over attention cases, limited to open ones of the buildings `user` may see."""
    return scoped(statement.where(AttentionCase.resolved_at.is_(None)), AttentionCase.building_id, user)


def open_case_count(user: User) -> int:
    return db.session.scalar(_open_in_scope(select(func.count(AttentionCase.id)), user))


def open_cases(user: User) -> list[AttentionCase]:
    """The open cases of the buildings `user` may see (backoffice.building_scope), oldest first."""
    return list(db.session.scalars(
        _open_in_scope(select(AttentionCase), user).order_by(AttentionCase.created_at)
        .options(joinedload(AttentionCase.booking).joinedload(Booking.user),
                 joinedload(AttentionCase.booking).joinedload(Booking.room).joinedload(Room.building),
                 joinedload(AttentionCase.payment), joinedload(AttentionCase.refund),
                 joinedload(AttentionCase.dispute))
    ))


def resolve(case: AttentionCase, staff: User) -> None:
    if case.resolved_at is None:
        case.resolved_at = now_utc()
        record("attention_case", case.id, "resolved", actor_id=staff.id, booking_id=case.booking_id)
