"""Cases staff must look at: e.g. a payment that arrived after its slot was taken."""
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import AttentionCase, Booking, User, record
from ..timeutil import now_utc


def open_cases() -> list[AttentionCase]:
    return list(db.session.scalars(
        select(AttentionCase).where(AttentionCase.resolved_at.is_(None)).order_by(AttentionCase.created_at)
        .options(joinedload(AttentionCase.booking).joinedload(Booking.user),
                 joinedload(AttentionCase.booking).joinedload(Booking.room))
    ))


def resolve(case: AttentionCase, staff: User) -> None:
    if case.resolved_at is None:
        case.resolved_at = now_utc()
        record("attention_case", case.id, "resolved", actor_id=staff.id, booking_id=case.booking_id)
