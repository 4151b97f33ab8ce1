"""Reading the audit trail: what happened to a booking and its payment, in order, with who did it."""
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import AuditEntry, Booking


def of_booking(booking: Booking) -> list[AuditEntry]:
    """The entries about the booking and about its payment, oldest first."""
    about = [and_(AuditEntry.subject == "booking", AuditEntry.subject_id == booking.id)]
    if booking.payment is not None:
        about.append(and_(AuditEntry.subject == "payment", AuditEntry.subject_id == booking.payment.id))
    return list(db.session.scalars(
        select(AuditEntry).where(or_(*about)).order_by(AuditEntry.at, AuditEntry.id)
        .options(joinedload(AuditEntry.actor))))
