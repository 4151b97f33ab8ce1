"""The booking flow: review a slot and its price, reserve it, see and cancel my bookings."""
from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import ACTIVE_STATES, Booking, Room
from ..public.routes import MAX_ID, room_or_404
from ..services import booking as booking_service
from ..services import pricing, rules
from ..services.errors import BookingError
from ..timeutil import now_utc
from . import bp
from .forms import CancelForm, ReserveForm, SlotForm


def _back_to_room(room_id: int, form: SlotForm, error: BookingError) -> str:
    """Where a resident goes to pick another slot: the day they chose, if it was a date at all."""
    if error.code != "invalid_date" and form.date.data:
        return url_for("public.room_day", room_id=room_id, day=form.date.data.isoformat(), _anchor="day")
    return url_for("public.room", room_id=room_id)


def _own_booking_or_404(booking_id: int) -> Booking:
    """The signed-in user's booking; anyone else's is "not found", so nothing about it leaks."""
    booking = db.session.get(Booking, booking_id) if 0 < booking_id <= MAX_ID else None
    if booking is None or booking.user_id != current_user.id:
        abort(404)
    return booking


@bp.get("/rooms/<int:room_id>/book")
@login_required
def review(room_id: int):
    room = room_or_404(room_id)
    form = SlotForm(request.args, meta={"csrf": False})
    try:
        slot = form.build_slot(room)
        rules.check_bookable(room, slot, now_utc())
    except BookingError as exc:
        flash(exc.message, "error")
        return redirect(_back_to_room(room_id, form, exc))
    price = pricing.quote(room, slot, current_user.residency)
    return render_template(
        "bookings/review.html",
        room=room,
        slot=slot,
        price=price,
        deadline=rules.window_closes_at(room, slot.start_at),
    )


@bp.post("/rooms/<int:room_id>/book")
@login_required
def reserve(room_id: int):
    room = room_or_404(room_id)
    form = ReserveForm()
    try:
        slot = form.build_slot(room)
        if form.expected_price.errors or form.expected_price.data is None:
            raise BookingError("price_changed")
        booking = booking_service.reserve(
            current_user._get_current_object(), room, slot, expected_price=form.expected_price.data
        )
    except BookingError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        if exc.code == "price_changed":
            return redirect(url_for(".review", room_id=room_id, **form.query_args()))
        return redirect(_back_to_room(room_id, form, exc))
    db.session.commit()
    flash(_("Your booking is confirmed."), "success")
    return redirect(url_for(".detail", booking_id=booking.id))


@bp.get("/bookings")
@login_required
def mine():
    bookings = db.session.scalars(
        select(Booking)
        .where(Booking.user_id == current_user.id)
        .options(joinedload(Booking.room).joinedload(Room.building))
        .order_by(Booking.start_at, Booking.id)
    ).all()
    now = now_utc()
    upcoming = [b for b in bookings if b.state in ACTIVE_STATES and b.end_at > now]
    others = [b for b in reversed(bookings) if b not in upcoming]
    return render_template("bookings/mine.html", upcoming=upcoming, others=others)


@bp.get("/bookings/<int:booking_id>")
@login_required
def detail(booking_id: int):
    booking = _own_booking_or_404(booking_id)
    deadline = booking_service.cancellation_deadline(booking)
    cancellable = booking.state in ACTIVE_STATES and now_utc() <= deadline
    return render_template(
        "bookings/detail.html", booking=booking, deadline=deadline, cancellable=cancellable, form=CancelForm()
    )


@bp.post("/bookings/<int:booking_id>/cancel")
@login_required
def cancel(booking_id: int):
    booking = _own_booking_or_404(booking_id)
    if not CancelForm().validate_on_submit():
        abort(400)
    try:
        booking_service.cancel_by_resident(booking, current_user._get_current_object())
    except BookingError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return redirect(url_for(".detail", booking_id=booking_id))
    db.session.commit()
    flash(_("Your booking has been cancelled."), "success")
    return redirect(url_for(".detail", booking_id=booking_id))


@bp.get("/bookings/<int:booking_id>/receipt")
@login_required
def receipt(booking_id: int):
    """Placeholder until the payment pages land."""
    abort(404)
