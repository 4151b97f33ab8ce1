"""Exemptions (減免): a reduction of a booking's fee that the ordinance allows, recorded with its legal ground.

One Exemption row per booking (models/groups.py). Without approval the price is reduced at once; with
approval the booking waits, held and not charged ("exemption pending"), until staff approve (the reduced
price is due; nothing at 100 %) or refuse it (the full fee is due by the payment deadline). The booking's
price is always what is due now: the full fee while pending or refused, the reduced fee once applied.
"""
from datetime import datetime, timedelta
from functools import partial

from flask import current_app, render_template
from flask_babel import force_locale
from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import contains_eager

from ..aftercommit import after_commit
from ..backoffice import in_scope, scoped
from ..extensions import db
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..links import external_url
from ..mail import send_mail
from ..models import (
    Booking,
    BookingState,
    Exemption,
    ExemptionKind,
    ExemptionState,
    Group,
    GroupCategory,
    Room,
    User,
    record,
)

INDIVIDUAL = "individual"  # ExemptionKind.eligible: a person booking as themselves
# Who a kind may be for, in the order the kinds page lists them.
ELIGIBLE_PARTIES = (*(c.value for c in GroupCategory), INDIVIDUAL)
KIND_FIELDS = ("code", "name_ja", "name_en", "rate_pct", "legal_ground", "eligible", "needs_approval", "active")
REASON_MAX = 2000  # a staff decision's reason, or a resident's note


def eligible_kinds(group: Group | None) -> list[ExemptionKind]:
    """The active kinds a booking as `group` (or as a person, None) may apply for."""
    who = group.category if group is not None else INDIVIDUAL
    kinds = db.session.scalars(select(ExemptionKind).where(ExemptionKind.active.is_(True))
                               .order_by(ExemptionKind.code)).all()
    return [k for k in kinds if who in k.eligible_list]


def any_kind_for_clause(who: str):
    """Whether eligible_kinds may find any kind for `who` (a group category, or INDIVIDUAL), as SQL (an EXISTS)
    to ask beside other things. A kind whose list merely contains the word counts too: False is exact, True
    means "look"."""
    return exists(select(ExemptionKind.id).where(ExemptionKind.active.is_(True), ExemptionKind.eligible.contains(who)))


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


class ExemptionError(Exception):
    """A decision or a kind that cannot be saved as asked: `message` says why, `field` which input it is about."""

    MESSAGES = {
        "decided": _l("This exemption has already been decided."),
        "not_held": _l("This booking is no longer held (cancelled, expired or already settled): "
                       "there is nothing to decide."),
        "duplicate_code": _l("Another exemption kind already has this code."),
        "staff_only": _l("Only staff of the booking's building decide on its exemption."),
    }

    def __init__(self, code: str, field: str | None = None):
        super().__init__(code)
        self.code, self.field = code, field

    @property
    def message(self) -> str:
        return str(self.MESSAGES.get(self.code, self.code))


def _check_open(exemption: Exemption, staff: User, now: datetime) -> None:
    if not staff.is_staff or not in_scope(staff, exemption.booking.room.building_id):
        raise ExemptionError("staff_only")
    if exemption.state != ExemptionState.PENDING:
        raise ExemptionError("decided")
    if not exemption.booking.hold_is_live(now):
        raise ExemptionError("not_held")


def lock(exemption_id: int) -> Exemption | None:
    """The exemption read afresh under a row lock, with its booking: two members of staff deciding at once
    decide once (the second finds it decided)."""
    exemption = db.session.get(Exemption, exemption_id, with_for_update=True, populate_existing=True)
    if exemption is not None:
        db.session.get(Booking, exemption.booking_id, populate_existing=True)
    return exemption


def approve(exemption: Exemption, *, staff: User, now: datetime, reason: str = "") -> None:
    """The reduced fee is due now; a booking reduced to nothing is confirmed (as a free booking is).

    Raises ExemptionError when it is no longer pending or its booking is no longer held. The resident is
    mailed after the commit."""
    _check_open(exemption, staff, now)
    reason = (reason or "").strip()
    exemption.state, exemption.decided_by_id, exemption.decided_at, exemption.reason = (
        ExemptionState.APPLIED, staff.id, now, reason)
    booking = exemption.booking
    booking.price = exemption.full_fee - exemption.reduction
    _detail(booking, exemption)
    record("booking", booking.id, "exemption approved", actor_id=staff.id, code=exemption.code,
           reduction=exemption.reduction, reason=reason)
    _now_due(booking, staff, reason="exempted in full")
    after_commit(_decision_mail(exemption))


def refuse(exemption: Exemption, *, staff: User, now: datetime, reason: str) -> None:
    """The full fee is due by the booking's payment deadline (hold_expires_at is left as it is).

    Raises ValueError without a reason, ExemptionError as approve does. The resident is mailed after the commit."""
    if not (reason or "").strip():
        raise ValueError("a refusal needs a reason")
    _check_open(exemption, staff, now)
    exemption.state, exemption.decided_by_id, exemption.decided_at, exemption.reason = (
        ExemptionState.REFUSED, staff.id, now, reason.strip())
    booking = exemption.booking
    booking.price = exemption.full_fee
    _detail(booking, exemption)
    record("booking", booking.id, "exemption refused", actor_id=staff.id, code=exemption.code, reason=reason.strip())
    _now_due(booking, staff, reason="free")
    after_commit(_decision_mail(exemption))


def _now_due(booking: Booking, staff: User, *, reason: str) -> None:
    """Once decided, the booking goes on as a new one would (booking.reserve): nothing due confirms it, and
    with online payment off so does any fee; otherwise its payment is opened, payable from My bookings
    until the same deadline."""
    if booking.state != BookingState.HELD:
        return
    from .booking import confirm  # booking builds on this module

    if booking.price == 0:
        confirm(booking, actor_id=staff.id, reason=reason)
    elif not current_app.config["PAYMENTS_ENABLED"]:
        confirm(booking, actor_id=staff.id, reason="no online payment")
    elif booking.payment is None:
        from .checkout import start_checkout  # checkout builds on this module

        start_checkout(booking)
        db.session.flush()
        db.session.refresh(booking)


def _decision_mail(exemption: Exemption):
    """The mail that tells the resident what staff decided and what is due now (rendered now, sent after the commit)."""
    from .deadline import pay_url  # deadline builds on booking, which builds on this module

    booking = exemption.booking
    user = booking.user
    payable = booking.state == BookingState.HELD and booking.payment is not None
    with force_locale(user.locale or current_app.config["BABEL_DEFAULT_LOCALE"]):
        if exemption.state == ExemptionState.APPLIED:
            subject = _("Your exemption was approved")
        else:
            subject = _("Your exemption was not approved: the full fee is due")
        body = render_template(
            "bookings/exemption_decided_mail.txt", booking=booking, exemption=exemption,
            kind_name=exemption.kind.display_name(str(user.locale or current_app.config["BABEL_DEFAULT_LOCALE"])),
            payable=payable, pay_link=pay_url(booking) if payable else None,
            link=external_url("bookings.detail", booking_id=booking.id) if booking.channel != "counter" else None)
    return partial(send_mail, user.email, subject, body)


# -- the staff's list ---------------------------------------------------------------------------------

def _waiting_statement(user: User, now: datetime):
    statement = (select(Exemption).join(Booking, Booking.id == Exemption.booking_id)
                 .join(Room, Room.id == Booking.room_id)
                 .where(Exemption.state == ExemptionState.PENDING, Booking.state == BookingState.HELD,
                        Booking.hold_expires_at > now))
    return scoped(statement, Room.building_id, user)


def waiting(user: User, now: datetime) -> list[Exemption]:
    """The exemptions waiting for a decision on live bookings of the buildings `user` may see, oldest first."""
    statement = (_waiting_statement(user, now)
                 .options(contains_eager(Exemption.booking).contains_eager(Booking.room))
                 .order_by(Exemption.created_at, Exemption.id))
    return list(db.session.scalars(statement).unique())


def waiting_count(user: User, now: datetime) -> int:
    return db.session.scalar(
        _waiting_statement(user, now).with_only_columns(func.count(Exemption.id)).order_by(None))


def is_overdue(exemption: Exemption, now: datetime) -> bool:
    """Past the day staff were to decide by (the booking may still be held: they can still decide)."""
    return exemption.state == ExemptionState.PENDING and exemption.decide_by is not None and exemption.decide_by <= now


# -- the kinds (ward-wide configuration, by admin) ------------------------------------------------------

def kinds() -> list[ExemptionKind]:
    return list(db.session.scalars(select(ExemptionKind).order_by(ExemptionKind.active.desc(), ExemptionKind.code)))


def _kind_values(values: dict) -> dict:
    out = {name: values[name] for name in KIND_FIELDS if name in values}
    if "eligible" in out and not isinstance(out["eligible"], str):
        chosen = set(out["eligible"])
        out["eligible"] = ",".join(p for p in ELIGIBLE_PARTIES if p in chosen)
    for name in ("code", "name_ja", "name_en", "legal_ground"):
        if name in out:
            out[name] = (out[name] or "").strip()
    return out


def save_kind(actor: User, values: dict, kind: ExemptionKind | None = None) -> tuple[ExemptionKind, bool]:
    """Create a kind (`kind` None) or change one; returns it and whether anything changed. Audited.

    Bookings already exempted keep the code, rate and legal ground they were given. Raises
    ExemptionError("duplicate_code", "code") for a code another kind has, also when one was saved a moment ago."""
    values = _kind_values(values)
    taken = select(ExemptionKind.id).where(ExemptionKind.code == values.get("code", kind.code if kind else ""))
    if kind is not None:
        taken = taken.where(ExemptionKind.id != kind.id)
    if db.session.scalar(taken.limit(1)) is not None:
        raise ExemptionError("duplicate_code", "code")
    if kind is None:
        kind = ExemptionKind(**values)
        db.session.add(kind)
        changes = None
    else:
        changes = {name: [getattr(kind, name), value] for name, value in values.items() if getattr(kind, name) != value}
        if not changes:
            return kind, False
        for name, (_before, after) in changes.items():
            setattr(kind, name, after)
    try:
        db.session.flush()
    except IntegrityError as exc:  # the same code saved at the same moment
        db.session.rollback()
        raise ExemptionError("duplicate_code", "code") from exc
    if changes is None:
        record("exemption_kind", kind.id, "created", actor_id=actor.id, **values)
    else:
        record("exemption_kind", kind.id, "updated", actor_id=actor.id, changes=changes)
    return kind, True
