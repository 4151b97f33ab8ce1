"""Facility setup: the rules by which staff change a building and its rooms (issue 8, section 2).

Every change writes an audit entry in the caller's transaction, with the values before and after
(only the fields that changed; `before` is None for something new, `after` None for something
removed), the member of staff as its actor. Services flush; the view commits.

Subjects and ids of those entries: "building" (the building), "room" (the room: its details, how
its time is let, its booking rules and payment), "division" and "closure" (the row; its room in
`room_id`), "refund_tier" (the ROOM's id: a room's tiers are replaced as one set).

What changes and what does not:
- a booking keeps the price it was sold at (Booking.price and price_detail): a new fee, hourly rate or
  multiplier applies to bookings made from then on. Nor does a new payment mode, hold time or
  booking window change a booking already made (it keeps its pay_mode and hold_expires_at);
- a closure, or opening hours that no longer cover a booking already made, would take time away from
  residents. Such a change is saved only together with a decision on every active booking it hits
  (held and not yet lapsed, or confirmed, not yet over; blocks too): "cancel" (a ward-reason
  cancellation: the whole amount back and a notice, services.cancellation) or "keep" (the booking
  stays, as an exception: a staff case "closure_kept" and an audit entry). Without a decision for each,
  DecisionsNeeded is raised before anything is written. A block (staff's own time, no user, no fee)
  takes a decision the same way: cancelled, it is simply cancelled (no money, no mail: its "user" is
  staff); kept, it gets the same case and audit entry.
- a division in use by a future booking keeps its code and times (its fees may change): staff
  cancel or move those bookings first.

Durability of a closure with its decisions: everything is checked before anything is written, and
the decisions are applied in an order that keeps them all-or-nothing. The cancellations that can
still fail (a payment not captured, whose intent the provider must cancel: it may be unreachable)
run before anything commits; a failure there raises and the view rolls everything back. The refunds
of captured payments run last: services.refunds records each and commits (the refund must be durable
before the provider moves money), and that commit carries the closure and every decision before it.
After it nothing is left that can refuse: a refund the provider does not take at once is retried by
the job, never lost.
"""
from dataclasses import dataclass
from datetime import date, datetime, time

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..i18n import lazy_gettext as _l
from ..models import (
    Booking,
    BookingKind,
    BookingState,
    Building,
    Closure,
    ClosureKind,
    Division,
    Letting,
    PaymentState,
    RefundUnit,
    Room,
    User,
    record,
)
from ..timeutil import business_date, local
from . import attention, refund_policy
from .booking import active_clause, lock_room
from .cancellation import cancel_for_ward_reason
from .errors import BookingError
from .rules import _closure_applies as closure_applies

BUILDING_FIELDS = ("name", "name_kana", "name_en", "address")
ROOM_FIELDS = ("name", "name_kana", "name_en", "kind", "capacity", "active")
HOURLY_FIELDS = ("open_time", "close_time", "step_minutes", "min_minutes", "max_minutes", "hourly_unit_minutes",
                 "weekday_hourly_fee", "holiday_hourly_fee")
RULE_FIELDS = ("nonresident_multiplier_pct", "window_months", "window_open_day", "window_open_time",
               "close_hours_before", "max_active_per_user", "hold_minutes", "payment_mode", "deadline_days_before",
               "deadline_time", "reminder_days_before")
DIVISION_FIELDS = ("code", "start_time", "end_time", "weekday_fee", "holiday_fee")
CLOSURE_FIELDS = ("kind", "weekday", "nth", "start_date", "end_date", "reason")

CANCEL, KEEP = "cancel", "keep"
DECISIONS = (CANCEL, KEEP)
# Why a booking is hit: the words in its case, its audit entry and the cancellation's note.
CAUSES = {"closure": "closure", "hours": "opening hours changed"}

MESSAGES = {
    "end_before_start": _l("The end must be later than the start."),
    "division_overlap": _l("This overlaps the division %(other)s (%(start)s–%(end)s)."),
    "duplicate_code": _l("This room already has a division with this code."),
    "division_in_use": _l(
        "Future bookings use this division (%(count)d): its code and times stay until they are cancelled or "
        "moved. Its fees may change."),
    "unknown_division": _l("That division is not one of this room's."),
    "unknown_closure": _l("That closure is not one of this room's."),
    "required": _l("Enter this for a room let by the hour."),
    "close_before_open": _l("The closing time must be later than the opening time."),
    "step_too_long": _l("The step is longer than the room is open."),
    "not_on_step": _l("Use a multiple of the step (%(step)d minutes)."),
    "min_over_max": _l("The shortest booking cannot be longer than the longest."),
    "longer_than_open": _l("This is longer than the room is open (%(minutes)d minutes)."),
    "weekday_required": _l("Choose the day of the week."),
    "nth_required": _l("Choose which week of the month."),
    "start_required": _l("Enter the first day of the closure."),
    "end_required": _l("Enter the last day of the closure."),
    "end_before_start_date": _l("The last day cannot be before the first day."),
    "period_over": _l("That period has already ended."),
    "duplicate_tier": _l("Two tiers have the same cut-off (%(count)d %(unit)s): keep one of them."),
    "no_tiers": _l("Enter at least one tier, or choose the default of the room's kind."),
}


class SetupError(Exception):
    """A rule refused the change; `field` names the form field it is about (None: the whole form)."""

    def __init__(self, code: str, field: str | None = None, **details):
        super().__init__(code)
        self.code, self.field, self.details = code, field, details

    @property
    def message(self) -> str:
        text = str(MESSAGES.get(self.code, self.code))
        return text % self.details if self.details else text


class DecisionsNeeded(Exception):
    """The change hits active bookings and not every one has a decision: nothing was written."""

    def __init__(self, hits: list[Booking]):
        super().__init__(f"{len(hits)} bookings need a decision")
        self.hits = hits


# -- before and after ---------------------------------------------------------------------------

def plain(value):
    """A value as the audit trail keeps it (JSON): times as HH:MM, dates as YYYY-MM-DD."""
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "value") and isinstance(value.value, str):  # a StrEnum
        return value.value
    return value


def snapshot(row, fields) -> dict:
    return {name: plain(getattr(row, name)) for name in fields}


def _assign(row, values: dict) -> tuple[dict, dict]:
    """Set the values on the row; returns (before, after) of the fields that changed."""
    before, after = {}, {}
    for name, value in values.items():
        old = getattr(row, name)
        if old != value:
            before[name], after[name] = plain(old), plain(value)
            setattr(row, name, value)
    return before, after


def _change(subject: str, row, values: dict, action: str, staff: User, **extra) -> bool:
    before, after = _assign(row, values)
    if not after:
        return False
    db.session.flush()
    record(subject, row.id, action, actor_id=staff.id, before=before, after=after, **extra)
    return True


# -- buildings and rooms ------------------------------------------------------------------------

def create_building(staff: User, values: dict) -> Building:
    building = Building(**values)
    db.session.add(building)
    db.session.flush()
    record("building", building.id, "created", actor_id=staff.id, before=None, after=snapshot(building, values))
    return building


def update_building(building: Building, staff: User, values: dict) -> bool:
    return _change("building", building, values, "updated", staff)


def create_room(building: Building, staff: User, values: dict) -> Room:
    """A new room of the building, let in divisions until staff say otherwise; it is not bookable
    online until it has divisions with fees (or hours and rates), Room.unbookable_reason."""
    room = Room(building_id=building.id, letting=Letting.DIVISION, **values)
    db.session.add(room)
    db.session.flush()
    record("room", room.id, "created", actor_id=staff.id, before=None, after=snapshot(room, values),
           building_id=building.id)
    return room


def update_room(room: Room, staff: User, values: dict) -> bool:
    return _change("room", room, values, "details changed", staff)


def update_rules(room: Room, staff: User, values: dict) -> bool:
    """Prices (the non-resident multiplier), the booking window, the per-user cap, the hold time and the
    payment mode. None of them changes a booking already made (see the module docstring)."""
    return _change("room", room, values, "rules changed", staff)


# -- divisions ------------------------------------------------------------------------------------

def _check_division(room: Room, values: dict, division: Division | None = None) -> None:
    if values["end_time"] <= values["start_time"]:
        raise SetupError("end_before_start", "end_time")
    for other in room.divisions:
        if other is division:
            continue
        if other.code == values["code"]:
            raise SetupError("duplicate_code", "code")
        if other.start_time < values["end_time"] and values["start_time"] < other.end_time:
            raise SetupError("division_overlap", "start_time", other=other.code,
                             start=plain(other.start_time), end=plain(other.end_time))


def _renumber(room: Room) -> None:
    """Positions follow the clock, so that consecutive divisions are consecutive (rules.division_slot)."""
    for position, division in enumerate(sorted(room.divisions, key=lambda d: d.start_time)):
        division.position = position


def division_bookings(room: Room, code: str, now: datetime) -> int:
    """How many active bookings of the room, not yet over, use the division `code`."""
    rows = db.session.scalars(select(Booking.division_codes).where(
        Booking.room_id == room.id, active_clause(now), Booking.end_at > now, Booking.division_codes.is_not(None)))
    return sum(1 for codes in rows if code in codes.split(","))


def add_division(room: Room, staff: User, values: dict) -> Division:
    _check_division(room, values)
    division = Division(position=len(room.divisions), **values)
    room.divisions.append(division)
    _renumber(room)
    db.session.flush()
    record("division", division.id, "created", actor_id=staff.id, room_id=room.id, before=None,
           after=snapshot(division, DIVISION_FIELDS))
    return division


def update_division(division: Division, staff: User, values: dict, now: datetime) -> bool:
    """Change a division. Its fees may always change (bookings keep their price); its code and times
    only while no future booking uses it."""
    room = division.room
    _check_division(room, values, division)
    moves = any(values[name] != getattr(division, name) for name in ("code", "start_time", "end_time"))
    if moves and (count := division_bookings(room, division.code, now)):
        raise SetupError("division_in_use", None, count=count)
    changed = _change("division", division, values, "updated", staff, room_id=room.id)
    if changed:
        _renumber(room)
    return changed


def remove_division(room: Room, division_id: int | None, staff: User, now: datetime) -> Division:
    division = next((d for d in room.divisions if d.id == division_id), None)
    if division is None:
        raise SetupError("unknown_division")
    if count := division_bookings(room, division.code, now):
        raise SetupError("division_in_use", None, count=count)
    before = snapshot(division, DIVISION_FIELDS)
    room.divisions.remove(division)
    _renumber(room)
    db.session.flush()
    record("division", division.id, "removed", actor_id=staff.id, room_id=room.id, before=before, after=None)
    return division


# -- bookings a change would hit, and the decisions on them -----------------------------------------

def _active_ahead(room: Room, now: datetime) -> list[Booking]:
    """The room's bookings and blocks that occupy it and are not over yet, earliest first."""
    return list(db.session.scalars(
        select(Booking).where(Booking.room_id == room.id, active_clause(now), Booking.end_at > now)
        .order_by(Booking.start_at).options(joinedload(Booking.user))))


def closure_hits(room: Room, closure: Closure, now: datetime) -> list[Booking]:
    """The active bookings (and blocks) on a day the closure closes the room."""
    return [b for b in _active_ahead(room, now) if closure_applies(closure, business_date(b.start_at))]


def hours_hits(room: Room, open_time: time, close_time: time, now: datetime) -> list[Booking]:
    """The active bookings (and blocks) that opening hours `open_time`–`close_time` no longer cover."""
    hits = []
    for booking in _active_ahead(room, now):
        start, end = local(booking.start_at), local(booking.end_at)
        if start.time() < open_time or end.date() != start.date() or end.time() > close_time:
            hits.append(booking)
    return hits


def _require_decisions(hits: list[Booking], decisions: dict[int, str]) -> None:
    if any(decisions.get(b.id) not in DECISIONS for b in hits):
        raise DecisionsNeeded(hits)


def payment_captured(booking: Booking) -> bool:
    """Money of this booking that a cancellation would refund (a captured payment, not all refunded)."""
    payment = booking.payment
    return payment is not None and payment.state == PaymentState.CAPTURED and payment.refundable > 0


def apply_decisions(hits: list[Booking], decisions: dict[int, str], staff: User, *, cause: str, note: str,
                    now: datetime) -> dict[str, list[int]]:
    """Carry out a decision on each hit booking (see the module docstring for the order); returns the ids
    cancelled and kept. A cancellation that fails raises BookingError before anything was committed."""
    why = f"{CAUSES[cause]}: {note}" if note else CAUSES[cause]
    kept = [b for b in hits if decisions[b.id] == KEEP]
    cancelled = [b for b in hits if decisions[b.id] == CANCEL]
    for booking in kept:
        record("booking", booking.id, "kept over a closure", actor_id=staff.id, reason=why, cause=cause)
        attention.open_booking_case(booking, "closure_kept", f"{why}; kept as an exception by {staff.name}")
    # Those that refund money last: the first refund commits, and nothing after it may fail.
    for booking in sorted(cancelled, key=payment_captured):
        if booking.kind == BookingKind.BLOCK:
            booking.transition(BookingState.CANCELLED, actor_id=staff.id, reason=f"block cancelled: {why}")
            continue
        try:
            cancel_for_ward_reason(booking, staff, "closure", note=why, now=now)
        except BookingError as exc:
            exc.details.setdefault("booking_id", booking.id)  # the view says which one, and that nothing was saved
            raise
    return {"cancelled": [b.id for b in cancelled], "kept": [b.id for b in kept]}


# -- how time is let ----------------------------------------------------------------------------

def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def _check_hourly(values: dict) -> None:
    for name in ("open_time", "close_time", "step_minutes", "hourly_unit_minutes", "weekday_hourly_fee",
                 "holiday_hourly_fee"):
        if values.get(name) is None:
            raise SetupError("required", name)
    span = _minutes(values["close_time"]) - _minutes(values["open_time"])
    if span <= 0:
        raise SetupError("close_before_open", "close_time")
    step = values["step_minutes"]
    if step > span:
        raise SetupError("step_too_long", "step_minutes")
    for name in ("min_minutes", "max_minutes"):
        if values.get(name) is not None:
            if values[name] % step:
                raise SetupError("not_on_step", name, step=step)
            if values[name] > span:
                raise SetupError("longer_than_open", name, minutes=span)
    if values.get("min_minutes") and values.get("max_minutes") and values["min_minutes"] > values["max_minutes"]:
        raise SetupError("min_over_max", "min_minutes")


def set_letting(room: Room, staff: User, letting: str, hourly: dict, decisions: dict[int, str],
                now: datetime) -> dict[str, list[int]] | None:
    """Let the room in divisions, or by the hour with these hours, durations and rates.

    Opening hours that leave out a booking already made need a decision on each such booking
    (DecisionsNeeded). Letting in divisions keeps the hourly settings as they were (unused).
    Returns the decisions carried out, or None when nothing changed.
    """
    values = {"letting": letting}
    hits: list[Booking] = []
    if letting == Letting.HOURLY:
        _check_hourly(hourly)
        values.update(hourly)
        lock_room(room.id)
        hours_move = (room.letting != Letting.HOURLY or room.open_time != hourly["open_time"]
                      or room.close_time != hourly["close_time"])
        if hours_move:
            hits = hours_hits(room, hourly["open_time"], hourly["close_time"], now)
            _require_decisions(hits, decisions)
    before, after = _assign(room, values)
    if not after:
        return None
    db.session.flush()
    record("room", room.id, "letting changed", actor_id=staff.id, before=before, after=after,
           hits=[b.id for b in hits])
    note = f"{plain(room.open_time)}–{plain(room.close_time)}" if letting == Letting.HOURLY else ""
    return apply_decisions(hits, decisions, staff, cause="hours", note=note, now=now)


# -- closures -----------------------------------------------------------------------------------

def _check_closure(values: dict, today: date) -> dict:
    """The closure's fields that its kind uses (the others None); raises SetupError."""
    kind = values["kind"]
    out = {"kind": kind, "reason": values["reason"], "weekday": None, "nth": None, "start_date": None,
           "end_date": None}
    if kind in (ClosureKind.WEEKLY, ClosureKind.MONTHLY):
        if values.get("weekday") is None:
            raise SetupError("weekday_required", "weekday")
        out["weekday"] = values["weekday"]
        if kind == ClosureKind.MONTHLY:
            if values.get("nth") is None:
                raise SetupError("nth_required", "nth")
            out["nth"] = values["nth"]
    else:
        if values.get("start_date") is None:
            raise SetupError("start_required", "start_date")
        if values.get("end_date") is None:
            raise SetupError("end_required", "end_date")
        if values["end_date"] < values["start_date"]:
            raise SetupError("end_before_start_date", "end_date")
        if values["end_date"] < today:
            raise SetupError("period_over", "end_date")
        out["start_date"], out["end_date"] = values["start_date"], values["end_date"]
    return out


def add_closure(room: Room, staff: User, values: dict, decisions: dict[int, str],
                now: datetime) -> tuple[Closure, dict[str, list[int]]]:
    """A new closure of the room, saved only with a decision on every active booking it hits."""
    fields = _check_closure(values, business_date(now))
    lock_room(room.id)  # no booking of the room is made while we look at them and decide
    closure = Closure(room_id=room.id, **fields)
    hits = closure_hits(room, closure, now)
    _require_decisions(hits, decisions)
    db.session.add(closure)
    db.session.flush()
    record("closure", closure.id, "created", actor_id=staff.id, room_id=room.id, before=None,
           after=snapshot(closure, CLOSURE_FIELDS), hits=[b.id for b in hits])
    done = apply_decisions(hits, decisions, staff, cause="closure", note=f"#{closure.id} {fields['reason']}", now=now)
    return closure, done


def remove_closure(room: Room, closure_id: int | None, staff: User) -> Closure:
    """Open the room again on the closure's days (no booking is hit by that)."""
    closure = next((c for c in room.closures if c.id == closure_id), None)
    if closure is None:
        raise SetupError("unknown_closure")
    before = snapshot(closure, CLOSURE_FIELDS)
    room.closures.remove(closure)
    db.session.flush()
    record("closure", closure.id, "removed", actor_id=staff.id, room_id=room.id, before=before, after=None)
    return closure


# -- refund policy --------------------------------------------------------------------------------

@dataclass(frozen=True)
class TierInput:
    unit: str
    count: int
    percent: int


def _tiers_of(room: Room) -> list[list] | None:
    tiers = sorted((t.unit, t.count, t.percent) for t in room.refund_tiers)
    return [list(t) for t in tiers] or None


def replace_refund_tiers(room: Room, staff: User, tiers: list[TierInput] | None) -> bool:
    """Give the room its own tiers as one set, or None: follow the default of its kind again.

    Each cut-off (unit, count) once; percentages 0..100 (the form and the database say so too).
    Cancellations already made keep what they refunded; the new tiers apply from now on.
    """
    if tiers is not None:
        if not tiers:
            raise SetupError("no_tiers")
        seen = set()
        for tier in tiers:
            if (tier.unit, tier.count) in seen:
                raise SetupError("duplicate_tier", count=tier.count,
                                 unit=str(UNIT_WORDS.get(tier.unit, tier.unit)))
            seen.add((tier.unit, tier.count))
    new = sorted([t.unit, t.count, t.percent] for t in tiers) if tiers else None
    old = _tiers_of(room)
    if new == old:
        return False
    # Out with the old ones first: the database allows one tier per cut-off, and a flush inserts before it deletes.
    room.refund_tiers.clear()
    db.session.flush()
    refund_policy.set_room_policy(room, [(t.unit, t.count, t.percent) for t in tiers] if tiers else None)
    db.session.flush()
    record("refund_tier", room.id, "room tiers replaced", actor_id=staff.id, room_id=room.id, before=old, after=new)
    return True


UNIT_WORDS = {RefundUnit.DAYS: _l("days"), RefundUnit.MONTHS: _l("months")}
