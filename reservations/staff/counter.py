"""Counter (窓口) pages: book on behalf, take cash or a terminal payment, block time, cancel with a reason.

The day view links its free cells here: /staff/counter/new and /staff/blocks/new take
?room_id=N&date=YYYY-MM-DD and &division=CODE (a room let in divisions) or &start=HH:MM&minutes=N
(by the hour). Without a room they list the rooms of the staff member's buildings to start from.
Thin views: the rules are in services/counter.py, services/blocks.py and services/cancellation.py.
"""
from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..backoffice import require_building, scoped
from ..extensions import db
from ..filters import yen
from ..i18n import gettext as _
from ..models import AuditEntry, Booking, BookingState, Building, Letting, Receipt, Residency, Role, Room, User
from ..public.routes import MAX_ID, row_or_404
from ..services import blocks, cancellation, counter, pricing
from ..services.errors import BookingError
from ..timeutil import business_date, now_utc
from . import bp, staff_required
from .counter_forms import BlockForm, CounterForm, CounterPaymentForm, StaffCancelForm, slot_args


def _room_from_args() -> Room | None:
    """The room ?room_id= names (404 if it does not exist or is not the staff member's), or None if none is named."""
    raw = request.args.get("room_id", "")
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= MAX_ID:
        return None
    room = row_or_404(Room, int(raw))
    require_building(room.building_id)
    return room


def _booking_or_404(booking_id: int) -> Booking:
    booking = row_or_404(Booking, booking_id)
    require_building(booking.room.building_id)
    return booking


def _pick_room(endpoint: str):
    """No room named: the rooms of the staff member's buildings, each a link to `endpoint` for today."""
    buildings = db.session.scalars(scoped(select(Building), Building.id, current_user).order_by(Building.id)
                                   .options(selectinload(Building.rooms))).all()
    return render_template("staff/counter/pick_room.html", buildings=buildings, endpoint=endpoint,
                           today=business_date(now_utc()))


def _initial(room: Room) -> dict:
    """The form's first values, from the link that opened it; an hour cell of the day view gives no length,
    so the room's shortest booking is offered."""
    data = slot_args(request.args)
    if room.letting == Letting.HOURLY and "start" in data and "minutes" not in data:
        data["minutes"] = room.min_minutes or room.step_minutes
    return data


def _slot_or_error(form, build):
    """The slot the form asks for, or (None, the message why it is not one); nothing asked yet is no error."""
    if form.date.data is None and not form.date.raw_data:
        return None, None
    try:
        return build(), None
    except BookingError as exc:
        return None, exc.message


# --- booking on someone's behalf ----------------------------------------------------------------


@bp.route("/counter/new", methods=["GET", "POST"])
@staff_required
def counter_new():
    room = _room_from_args()
    if room is None:
        return _pick_room("staff.counter_new")
    query = request.args.get("q", "").strip()[:100]
    residents = counter.search_residents(query)
    if request.method == "POST":
        form = CounterForm(room=room, residents=residents)
    else:
        form = CounterForm(formdata=None, data=_initial(room), room=room, residents=residents)
    if request.method == "POST" and form.validate_on_submit():
        response = _book(form, room)
        if response is not None:
            return response
    slot, slot_error = _slot_or_error(form, form.booking_slot)
    prices = None
    if slot is not None:
        prices = {"ward": pricing.quote(room, slot, Residency.RESIDENT).total,
                  "outside": pricing.quote(room, slot, Residency.OUTSIDE).total}
    return render_template("staff/counter/new.html", room=room, form=form, query=query, residents=residents,
                           slot=slot, slot_error=slot_error if request.method == "GET" else None, prices=prices,
                           searched=len(query) >= 2), 422 if form.errors else 200


def _resident(form: CounterForm) -> User | None:
    user = db.session.get(User, form.user_id.data) if 0 < (form.user_id.data or 0) <= MAX_ID else None
    if user is None or user.role != Role.RESIDENT:
        form.user_id.errors = [*form.user_id.errors, _("Choose the resident, or find them first.")]
        return None
    return user


def _book(form: CounterForm, room: Room):
    """Make the booking the valid form asks for; the page to go to, or None (the form now has the error)."""
    user = None
    if form.customer.data == "registered":
        user = _resident(form)
        if user is None:
            return None
    try:
        slot = form.booking_slot()
        made = counter.book_on_behalf(
            current_user._get_current_object(), room, slot, method=form.method.data, user=user,
            name=form.name.data, name_kana=form.name_kana.data, phone=form.phone.data,
            residency=form.residency.data, slip_number=form.slip_number.data, note=form.note.data)
    except BookingError as exc:
        db.session.rollback()
        field = form.slip_number if exc.code == "slip_required" else None
        (field.errors if field is not None else form.form_errors).append(exc.message)
        return None
    booking_id = made.booking.id
    db.session.commit()
    if made.receipt is not None:
        flash(_("Booked and paid. Hand over the receipt."), "success")
        return redirect(url_for(".counter_receipt", booking_id=booking_id))
    if made.payment_link is not None:
        flash(_("Booked, to be paid online by the deadline. Give them the payment link."), "success")
        return redirect(url_for(".payment_slip", booking_id=booking_id))
    flash(_("Booked. There is no fee."), "success")
    return redirect(url_for(".booking", booking_id=booking_id))


# --- blocks -------------------------------------------------------------------------------------


@bp.route("/blocks/new", methods=["GET", "POST"])
@staff_required
def block_new():
    room = _room_from_args()
    if room is None:
        return _pick_room("staff.block_new")
    if request.method == "POST":
        form = BlockForm(room=room)
    else:
        form = BlockForm(formdata=None, data=_initial(room), room=room)
    hits = []
    if request.method == "POST" and form.validate_on_submit():
        try:
            slot = form.block_slot()
            block = blocks.place_block(current_user._get_current_object(), room, slot, note=form.note.data,
                                       cancel_hits=form.cancel_hits.data)
        except BookingError as exc:
            db.session.rollback()
            form.form_errors.append(exc.message)
            ids = exc.details.get("bookings") or []
            hits = db.session.scalars(select(Booking).where(Booking.id.in_(ids)).order_by(Booking.start_at)).all()
        else:
            day = business_date(block.start_at)
            db.session.commit()
            flash(_("The time is blocked."), "success")
            return redirect(url_for(".building_day", building_id=room.building_id, date=day.isoformat()))
    slot, slot_error = _slot_or_error(form, form.block_slot)
    return render_template("staff/counter/block.html", room=room, form=form, hits=hits, slot=slot,
                           slot_error=slot_error if request.method == "GET" else None), 422 if form.errors else 200


# --- cancelling, and what is printed for the resident ---------------------------------------------

CANCEL_PREFIX = "cancel"  # the form shares the booking page with others: its fields' ids start with it


@bp.post("/bookings/<int:booking_id>/cancel")
@staff_required
def counter_cancel(booking_id: int):
    booking = _booking_or_404(booking_id)
    form = StaffCancelForm(prefix=CANCEL_PREFIX)
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for message in errors:
                flash(message, "error")
        return redirect(url_for(".booking", booking_id=booking_id))
    was_block, walk_in = booking.is_block, booking.user.walk_in
    try:
        refund = cancellation.cancel_by_staff(booking, current_user._get_current_object(), form.kind.data,
                                              form.note.data)
    except BookingError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return redirect(url_for(".booking", booking_id=booking_id))
    method = refund.payment.provider if refund is not None else None
    amount = refund.amount if refund is not None else 0
    db.session.commit()
    if was_block:
        flash(_("The block is lifted; the time is free again."), "success")
    elif method == "cash":
        flash(_("Cancelled. Pay %(amount)s back in cash now: it is recorded as paid out at the counter.",
                amount=yen(amount)), "success")
    elif method == "terminal":
        flash(_("Cancelled. Refund %(amount)s to the card on the terminal now: it is recorded.",
                amount=yen(amount)), "success")
    elif method:
        flash(_("Cancelled. %(amount)s is refunded to the card.", amount=yen(amount)), "success")
    else:
        flash(_("Cancelled. Nothing is refunded."), "success")
    if walk_in and not was_block:  # no mail reaches a walk-in: the notice is printed
        return redirect(url_for(".cancellation_notice", booking_id=booking_id))
    return redirect(url_for(".booking", booking_id=booking_id))


PAY_PREFIX = "pay"


@bp.post("/bookings/<int:booking_id>/counter-payment")
@staff_required
def counter_payment(booking_id: int):
    """A booking waiting for its payment (e.g. booked with a payment link) is paid at the counter instead."""
    booking = _booking_or_404(booking_id)
    form = CounterPaymentForm(prefix=PAY_PREFIX)
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for message in errors:
                flash(message, "error")
        return redirect(url_for(".booking", booking_id=booking_id))
    try:
        receipt = counter.take_at_counter(booking, form.method.data, staff=current_user._get_current_object(),
                                          slip_number=form.slip_number.data)
    except BookingError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return redirect(url_for(".booking", booking_id=booking_id))
    db.session.commit()
    flash(_("Paid at the counter: receipt %(number)s.", number=receipt.number), "success")
    return redirect(url_for(".counter_receipt", booking_id=booking_id))


def _receipt_of(booking: Booking) -> Receipt | None:
    return db.session.scalar(select(Receipt).where(Receipt.booking_id == booking.id))


@bp.get("/bookings/<int:booking_id>/receipt")
@staff_required
def counter_receipt(booking_id: int):
    """The booking's receipt, to print and hand over (cash, terminal, or a card paid online)."""
    booking = _booking_or_404(booking_id)
    receipt = _receipt_of(booking)
    if receipt is None:
        flash(_("This booking has no receipt: nothing has been paid for it."), "error")
        return redirect(url_for(".booking", booking_id=booking_id))
    return render_template("staff/counter/receipt.html", booking=booking, receipt=receipt,
                           payment=booking.payment)


CANCEL_ACTIONS = ("cancelled by staff", "cancelled for a ward reason", "block lifted")


@bp.get("/bookings/<int:booking_id>/notice")
@staff_required
def cancellation_notice(booking_id: int):
    """The notice of a cancellation, to print: what a walk-in, who gets no mail, takes home."""
    booking = _booking_or_404(booking_id)
    if booking.state != BookingState.CANCELLED or booking.is_block:
        flash(_("This booking is not cancelled."), "error")
        return redirect(url_for(".booking", booking_id=booking_id))
    entry = db.session.scalar(select(AuditEntry).where(
        AuditEntry.subject == "booking", AuditEntry.subject_id == booking.id, AuditEntry.action.in_(CANCEL_ACTIONS))
        .order_by(AuditEntry.id.desc()).limit(1))
    data = entry.data if entry is not None else {}
    reason = cancellation.STAFF_REASONS.get(data.get("kind") or data.get("reason") or "")
    payment = booking.payment
    refunds = list(payment.refunds) if payment is not None else []
    return render_template("staff/counter/notice.html", booking=booking, reason=reason, note=data.get("note", ""),
                           cancelled_at=entry.at if entry is not None else booking.updated_at, payment=payment,
                           refunded=sum(r.amount for r in refunds if r.state in ("pending", "succeeded")))


@bp.get("/bookings/<int:booking_id>/payment-slip")
@staff_required
def payment_slip(booking_id: int):
    """The payment link of a booking to be paid online by its deadline, to print for the resident."""
    booking = _booking_or_404(booking_id)
    if not (booking.pay_mode == "deadline" and booking.hold_is_live(now_utc()) and booking.payment is not None):
        flash(_("This booking has no payment link: it is not waiting to be paid online by a deadline."), "error")
        return redirect(url_for(".booking", booking_id=booking_id))
    from ..services import deadline

    return render_template("staff/counter/payment_slip.html", booking=booking, link=deadline.payment_link(booking))


# --- the actions on the staff booking page (templates/staff/_counter_actions.html) ---------------


@bp.context_processor
def counter_action_helpers() -> dict:
    def counter_actions(booking: Booking) -> dict:
        now = now_utc()
        live = booking.state == BookingState.CONFIRMED or booking.hold_is_live(now)
        return {
            "receipt": _receipt_of(booking),
            "cancellable": live and now < booking.end_at,
            "form": StaffCancelForm(formdata=None, prefix=CANCEL_PREFIX),
            "notice": booking.state == BookingState.CANCELLED and not booking.is_block,
            "slip": booking.pay_mode == "deadline" and booking.hold_is_live(now) and booking.payment is not None,
            # Waiting for its payment: it may be paid at the counter instead.
            "payable": booking.hold_is_live(now) and not booking.is_block and booking.price > 0,
            "pay_form": CounterPaymentForm(formdata=None, prefix=PAY_PREFIX),
        }

    return {"counter_actions": counter_actions}
