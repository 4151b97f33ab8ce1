"""Cases staff must look at, in one list by building: a payment that arrived after its slot was taken,
a refund that failed, a dispute, a provider event we could not apply, a counter booking left unpaid
past its deadline, a closure that fell on bookings.

A case is resolved with a note (who, when and what was done), and stays in the history.
"""
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import joinedload

from ..backoffice import scoped
from ..extensions import db
from ..i18n import lazy_gettext as _l
from ..models import AttentionCase, Booking, Building, Dispute, Payment, Refund, Room, User, record
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
    "paid_after_deadline": _l("Paid after the payment deadline; the money was returned automatically"),
    "webhook_unapplied": _l("A payment provider event could not be applied: check it at the provider"),
    "counter_unpaid_past_deadline": _l("Booked at the counter and not paid by the payment deadline"),
    "closure_kept": _l("A new closure falls on this booking: it was kept, and the resident should be told"),
    "moved_difference_unpaid": _l(
        "Moved, and the difference not paid by the deadline: cancelled, and the fee paid before refunded"),
    # Reconciliation with Stripe (services/finance/reconcile.py; finance acts on them at /finance/reconcile).
    "reconciliation_mismatch": _l("Reconciliation: Stripe and the ledger differ in amount"),
    "reconciliation_only_in_stripe": _l("Reconciliation: money at Stripe that the ledger does not have"),
    "reconciliation_only_in_ledger": _l("Reconciliation: a ledger row Stripe does not have"),
    "charged_without_booking": _l(
        "Charged at Stripe, but the booking was never confirmed: confirm it or refund it (finance)"),
}
HISTORY_PAGE_SIZE = 50
NOTE_MAX = 2000


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
              dispute: Dispute | None = None, webhook_event_id: str | None = None) -> AttentionCase:
    """Put a case about one of our payments on the staff list (the caller's transaction commits it)."""
    case = AttentionCase(booking_id=payment.booking_id, payment_id=payment.id, reason=reason, detail=detail,
                         building_id=payment.booking.room.building_id, webhook_event_id=webhook_event_id,
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


def open_webhook_case(event_id: str, detail: str, payment: Payment | None = None) -> AttentionCase:
    """A provider event we could not apply. About a payment we know, it is that booking's building's case;
    about nothing we know, it has no booking and no building, and only the unscoped (admin) see it."""
    if payment is not None:
        return open_case(payment, "webhook_unapplied", detail, webhook_event_id=event_id)
    case = AttentionCase(reason="webhook_unapplied", detail=detail, webhook_event_id=event_id)
    db.session.add(case)
    db.session.flush()
    record("attention_case", case.id, "opened", reason="webhook_unapplied", webhook_event_id=event_id)
    return case


def case_building_id(case: AttentionCase) -> int | None:
    """The building a case belongs to; None (admin only) for one that names nothing we know."""
    return case.building_id


def _in_scope(statement, user: User, *, resolved: bool):
    """`statement` over attention cases, limited to open (or resolved) ones of the buildings `user` may see."""
    state = AttentionCase.resolved_at.is_not(None) if resolved else AttentionCase.resolved_at.is_(None)
    return scoped(statement.where(state), AttentionCase.building_id, user)


def _with_details(statement):
    return statement.options(
        joinedload(AttentionCase.booking).joinedload(Booking.user),
        joinedload(AttentionCase.booking).joinedload(Booking.room).joinedload(Room.building),
        joinedload(AttentionCase.payment), joinedload(AttentionCase.refund),
        joinedload(AttentionCase.dispute), joinedload(AttentionCase.resolved_by))


def open_case_count(user: User) -> int:
    return db.session.scalar(_in_scope(select(func.count(AttentionCase.id)), user, resolved=False))


def open_cases(user: User, building_id: int | None = None) -> list[AttentionCase]:
    """The open cases of the buildings `user` may see (backoffice.building_scope), oldest first;
    of one building only when `building_id` is given."""
    statement = _in_scope(select(AttentionCase), user, resolved=False)
    if building_id is not None:
        statement = statement.where(AttentionCase.building_id == building_id)
    return list(db.session.scalars(_with_details(statement.order_by(AttentionCase.created_at, AttentionCase.id))))


@dataclass
class Group:
    building: Building | None  # None: the cases that name no building (admin only)
    cases: list[AttentionCase]


def by_building(cases: list[AttentionCase]) -> list[Group]:
    """The cases grouped by building, in building order, those of no building last; one query for the names."""
    ids = {c.building_id for c in cases if c.building_id is not None}
    buildings = {b.id: b for b in db.session.scalars(select(Building).where(Building.id.in_(ids)))} if ids else {}
    groups = [Group(buildings[i], [c for c in cases if c.building_id == i]) for i in sorted(ids)]
    unplaced = [c for c in cases if c.building_id is None]
    if unplaced:
        groups.append(Group(None, unplaced))
    return groups


def resolved_cases(user: User, *, page: int = 1, per_page: int = HISTORY_PAGE_SIZE) -> tuple[list[AttentionCase], bool]:
    """A page of the resolved cases `user` may see, newest resolution first, and whether there is a next page."""
    page = max(page, 1)
    found = list(db.session.scalars(_with_details(
        _in_scope(select(AttentionCase), user, resolved=True)
        .order_by(AttentionCase.resolved_at.desc(), AttentionCase.id.desc())
        .offset((page - 1) * per_page).limit(per_page + 1))))
    return found[:per_page], len(found) > per_page


# Cases closed only by what is done about the money, never by a note: a charge that reached Stripe for a
# booking that was never confirmed is confirmed or refunded (services/finance/reconcile.py, /finance/reconcile).
SETTLED_BY_ACTION = frozenset({"charged_without_booking"})


def resolve(case: AttentionCase, staff: User, note: str) -> bool:
    """Close the case with what was done about it (required); False if it was already resolved.

    One conditional UPDATE: of two staff resolving the same case at once, one wins and the other is told.
    """
    note = (note or "").strip()[:NOTE_MAX]
    if not note:
        raise ValueError("a case is resolved with a note")
    now = now_utc()
    result = db.session.execute(
        update(AttentionCase).where(AttentionCase.id == case.id, AttentionCase.resolved_at.is_(None))
        .values(resolved_at=now, resolved_by_id=staff.id, resolution_note=note)
        .execution_options(synchronize_session=False))
    db.session.expire(case, ["resolved_at", "resolved_by_id", "resolution_note", "resolved_by"])
    if result.rowcount != 1:
        return False
    record("attention_case", case.id, "resolved", actor_id=staff.id, booking_id=case.booking_id,
           before={"resolved_at": None}, after={"resolved_at": now.isoformat()}, note=note)
    db.session.flush()
    return True
