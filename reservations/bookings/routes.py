"""The booking flow: review a slot and its price, reserve it, pay for it, see, print and cancel my bookings."""
from dataclasses import dataclass
from functools import lru_cache

from flask import abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import format_date, get_locale
from flask_login import current_user, login_required
from sqlalchemy import bindparam, select
from sqlalchemy.orm import joinedload, selectinload
from werkzeug.datastructures import MultiDict
from wtforms import SelectChoice

from .. import limits
from ..db_mode import writes
from ..extensions import db
from ..filters import tokyo_time, yen
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..models import (
    ACTIVE_STATES,
    Booking,
    BookingState,
    ExemptionKind,
    Group,
    Payment,
    PaymentState,
    Receipt,
    RefundState,
    Room,
)
from ..payments import GatewayError, get_gateway
from ..public.labels import catalog_lang
from ..public.routes import MAX_ID, row_or_404
from ..services import (
    audit_trail,
    cancellation,
    checkout,
    deadline,
    exemptions,
    no_shows,
    pricing,
    refund_policy,
    rules,
)
from ..services import booking as booking_service
from ..services import groups as groups_service
from ..services.errors import BookingError
from ..timeutil import business_date, now_utc
from . import bp
from .forms import CancelForm, PayForm, ReserveForm, ReviewForm, SlotForm

PAYMENT_STATES = {
    PaymentState.NEW: _l("Waiting for payment"),
    PaymentState.PENDING: _l("Waiting for payment"),
    PaymentState.AUTHORIZED: _l("Card authorised"),
    PaymentState.CAPTURED: _l("Paid"),
    PaymentState.FAILED: _l("Not paid: nothing was charged"),
    PaymentState.CANCELLED: _l("Not paid: nothing was charged"),
}
REFUND_STATES = {
    RefundState.PENDING: _l("Being processed"),
    RefundState.SUCCEEDED: _l("Refunded"),
    RefundState.FAILED: _l("Failed"),
    RefundState.CANCELLED: _l("Cancelled"),
}
# What the payment endpoints answer for a domain error (never a 500).
ERROR_STATUS = {"card_declined": 402, "card_declined_hold_kept": 402, "card_declined_deadline_kept": 402,
                "authentication_failed": 402,
                "payment_failed": 402, "hold_expired": 409,
                "payment_unavailable": 503}


@bp.context_processor
def payment_labels() -> dict:
    return {
        "payment_state_label": lambda code: str(PAYMENT_STATES.get(code, code)),
        "refund_state_label": lambda code: str(REFUND_STATES.get(code, code)),
        "error_message": lambda code: BookingError(code).message,
    }


def _back_to_room(room_id: int, form: SlotForm, error: BookingError) -> str:
    """Where a resident goes to pick another slot: the day they chose, if it was a date at all."""
    if error.code != "invalid_date" and form.date.data:
        return url_for("public.room_day", room_id=room_id, day=form.date.data.isoformat(), _anchor="day")
    return url_for("public.room", room_id=room_id)


def _own_booking_or_404(booking_id: int) -> Booking:
    """The signed-in user's booking; anyone else's is "not found", so nothing about it leaks."""
    booking = row_or_404(Booking, booking_id)
    if booking.user_id != current_user.id:
        abort(404)
    return booking


def _own_payment_or_404(booking_id: int) -> Payment:
    payment = _own_booking_or_404(booking_id).payment
    if payment is None:
        abort(404)
    return payment


def _receipt_of(booking: Booking) -> Receipt | None:
    return db.session.scalar(select(Receipt).where(Receipt.booking_id == booking.id))


def _day_of(booking: Booking) -> str:
    return url_for("public.room_day", room_id=booking.room_id, day=business_date(booking.start_at).isoformat(),
                   _anchor="day")


@dataclass
class Offer:
    """Who books and what it costs, as the review page shows it and reserve() will charge it."""

    groups: list[Group]  # the groups the resident may book for
    group: Group | None  # the one chosen, None: as themselves
    kinds: list[ExemptionKind]  # the exemptions the chosen party may use
    kind: ExemptionKind | None
    residency: str  # the fee class: the resident's, or the group's
    price: pricing.Quote  # the full fee
    reduction: int  # what the exemption takes off (0 without one)
    hold: deadline.Hold
    errors: dict[str, str]  # field name -> message, for a choice that cannot be booked

    @property
    def pending(self) -> bool:
        """The exemption waits for staff: nothing is charged until they decide."""
        return self.kind is not None and self.kind.needs_approval

    @property
    def due(self) -> int:
        """What is charged on reserving (with approval: what is due once approved)."""
        return self.price.total - self.reduction


# The booking errors that are about the "book as" and exemption choices: said beside them, the choices kept.
PARTY_ERRORS = {"not_group_member": "book_as", "exemption_not_eligible": "exemption", "exemption_too_late": "exemption"}


@dataclass(frozen=True)
class Known:
    """What the review page asked with its room (_review_facts), instead of a query each: whether the lottery
    hides the day (None: not asked), whether the resident acts for any group, whether any exemption kind may be
    for a person. The defaults ask."""

    lottery: bool | None = None
    groups: bool = True
    person_kinds: bool = True


ASK_EACH = Known()


@lru_cache(maxsize=1)
def _review_facts():
    """The catalog's token and Known's three questions in one SELECT, built once with bound parameters
    (:room_id, :month, :now, :user_id, :today)."""
    return select(rules.catalog_token_clause(),
                  rules.lottery_hides_month(bindparam("room_id"), bindparam("month"), bindparam("now")),
                  groups_service.acts_for_any_clause(bindparam("user_id"), bindparam("today")),
                  exemptions.any_kind_for_clause(exemptions.INDIVIDUAL))


def review_facts(room_id: int, user_id: int, day, now) -> tuple:
    """The catalog's token, whether a lottery keeps the day's month, whether the user acts for any group, and
    whether any exemption kind is for a person (_review_facts)."""
    return tuple(db.session.execute(_review_facts(), {
        "room_id": room_id, "month": day.replace(day=1), "now": now, "user_id": user_id,
        "today": business_date(now)}).one())


def _kept_room_or_404(room_id: int, token: str | None) -> Room:
    """An active room with its rules and refund tiers, as this process keeps it for the catalog's `token`
    (rules.cached_room_with_rules), or 404."""
    room = rules.cached_room_with_rules(room_id, token) if 0 < room_id <= MAX_ID else None
    if room is None or not room.active:
        abort(404)
    return room


def _offer(room: Room, slot: rules.Slot, form: ReviewForm, now, known: Known = ASK_EACH) -> Offer:
    """The party and exemption the form asks for, judged as place_hold will judge them (services/groups.py,
    services/exemptions.py), and the price that follows. A choice that cannot be booked is left out and said
    in `errors`."""
    user = current_user._get_current_object()
    errors: dict[str, str] = {}
    groups = groups_service.acting_groups(user, business_date(now)) if known.groups else []
    group = None
    if form.book_as.data:
        group = next((g for g in groups if g.id == form.chosen_id("book_as")), None)
        if group is None:
            errors["book_as"] = BookingError("not_group_member").message
    kinds = exemptions.eligible_kinds(group) if group is not None or known.person_kinds else []
    kind = None
    if form.exemption.data and not errors:
        kind = next((k for k in kinds if k.id == form.chosen_id("exemption")), None)
        if kind is None:
            errors["exemption"] = BookingError("exemption_not_eligible").message
        elif kind.needs_approval and deadline.hold_for(room, slot.start_at, now, deadline=True).pay_mode != "deadline":
            errors["exemption"] = BookingError("exemption_too_late").message
    residency = groups_service.fee_residency(group) if group is not None else user.residency
    price = pricing.quote(room, slot, residency)
    reduction = exemptions.reduction_of(kind, price.total) if kind is not None and not errors else 0
    if errors:
        kind = None
    hold = deadline.hold_for(room, slot.start_at, now,
                             deadline=True if kind is not None and kind.needs_approval else None)
    # A group's name as registered, marked Japanese on an English page so a screen reader reads it so.
    form.book_as.choices = [SelectChoice("", _("Myself"))] + [
        SelectChoice(str(g.id), g.name, render_kw={"lang": "ja"} if catalog_lang(g.name) else {}) for g in groups]
    form.exemption.choices = [("", _("No exemption"))] + [
        (str(k.id), f"{k.code} {k.display_name(str(get_locale()))} ({_('%(rate)d%% off', rate=k.rate_pct)})")
        for k in kinds]
    return Offer(groups, group, kinds, kind, residency, price, reduction, hold, errors)


def _review_page(room: Room, slot: rules.Slot, form: ReviewForm, now, errors: dict | None = None, status: int = 200,
                 known: Known = ASK_EACH):
    offer = _offer(room, slot, form, now, known)
    offer.errors.update(errors or {})
    for name, message in offer.errors.items():
        if message not in form[name].errors:
            form[name].errors = [*form[name].errors, message]
    paid_online = offer.due > 0 and current_app.config["PAYMENTS_ENABLED"]
    return render_template(
        "bookings/review.html",
        room=room,
        slot=slot,
        form=form,
        offer=offer,
        price=offer.price,
        paid_online=paid_online,
        hold_minutes=deadline.hold_minutes(room),
        pay_by=offer.hold.expires_at if offer.hold.pay_mode == "deadline" else None,
        decide_by=exemptions.decide_by(offer.hold.expires_at, now) if offer.pending else None,
        refund_schedule=refund_policy.refund_schedule(room, slot.start_at) if paid_online or offer.pending else [],
        now=now,
    ), status


@bp.get("/rooms/<int:room_id>/book")
@login_required
def review(room_id: int):
    form = ReviewForm(request.args, meta={"csrf": False})
    now = now_utc()
    day, today = form.date.data, business_date(now)
    # Everything the page asks the database, but the resident's groups and exemption kinds when there are any,
    # in one statement; the room is the one this process keeps while the catalog's token is unchanged.
    token, lottery, groups, person_kinds = review_facts(room_id if 0 < room_id <= MAX_ID else 0, current_user.id,
                                                        day or today, now)
    room = _kept_room_or_404(room_id, token)
    known = Known(bool(lottery) if day is not None else None, bool(groups), bool(person_kinds))
    try:
        slot = form.build_slot(room)
        rules.check_bookable(room, slot, now, hidden_by_lottery=known.lottery)
    except BookingError as exc:
        flash(exc.message, "error")
        return redirect(_back_to_room(room_id, form, exc))
    return _review_page(room, slot, form, now, known=known)


def _chosen(form: ReserveForm) -> tuple[Group | None, ExemptionKind | None]:
    """The group and the exemption kind the form names; one that does not exist is refused as the service
    refuses one the resident may not use."""
    group = kind = None
    if form.book_as.data:
        group_id = form.chosen_id("book_as")
        group = db.session.get(Group, group_id) if group_id else None
        if group is None:
            raise BookingError("not_group_member")
    if form.exemption.data:
        kind_id = form.chosen_id("exemption")
        kind = db.session.get(ExemptionKind, kind_id) if kind_id else None
        if kind is None:
            raise BookingError("exemption_not_eligible")
    return group, kind


def _room_under_hold_locks(room_id: int) -> tuple[Room, str | None]:
    """The room a reserve judges its hold on, once the hold's locks are taken (booking_service.lock_for_hold),
    and the catalog token it is kept under when that is still to be checked.

    The room this process keeps is taken as it is, and the standing that place_hold reads under the locks
    brings the catalog's token with it (one round trip fewer): a token that is not the kept one means the room
    changed, and place_hold raises StaleRoom before it judges anything (reserve then reads the room again). A
    room not kept yet, or kept inactive, is read now, after the token (rules.cached_room_with_rules), and needs
    no check. Either way place_hold neither locks again nor reads the room a second time."""
    if not 0 < room_id <= MAX_ID:  # the lock's key is an int4
        abort(404)
    booking_service.lock_for_hold(current_user.id, room_id)
    kept = rules.kept_room(room_id)
    if kept is not None and kept[1].active:
        return kept[1], kept[0]
    return _kept_room_or_404(room_id, rules.catalog_token()), None


def _still_the_room(room_id: int, guessed: str | None) -> None:
    """Before a refusal that was judged on a kept room whose token is not checked yet: StaleRoom if it changed."""
    if guessed is not None and (token := rules.catalog_token()) != guessed:
        raise booking_service.StaleRoom(token)


@bp.post("/rooms/<int:room_id>/book")
@login_required
@limits.reserve
def reserve(room_id: int):
    room, guessed = _room_under_hold_locks(room_id)
    form = ReserveForm()
    try:
        return _reserve(room_id, room, form, guessed)
    except booking_service.StaleRoom as stale:
        # Still in the transaction and under its locks: the room as the catalog now has it, and the same form.
        return _reserve(room_id, _kept_room_or_404(room_id, stale.token), form, None)


def _reserve(room_id: int, room: Room, form: ReserveForm, guessed: str | None):
    slot = None
    try:
        try:
            slot = form.build_slot(room)
            if form.expected_price.errors or form.expected_price.data is None:
                raise BookingError("price_changed")
            if form.exemption_note.errors:
                _still_the_room(room_id, guessed)
                db.session.rollback()
                return _review_page(room, slot, form, now_utc(), {"exemption_note": form.exemption_note.errors[0]},
                                    422)
            group, kind = _chosen(form)
        except BookingError:
            _still_the_room(room_id, guessed)  # a room kept from before a change may refuse what the room allows
            raise
        booking = booking_service.reserve(
            current_user._get_current_object(), room, slot, expected_price=form.expected_price.data,
            group=group, exemption_kind=kind, exemption_note=(form.exemption_note.data or "") if kind else "",
            room_token=guessed,
        )
    except BookingError as exc:
        db.session.rollback()
        if exc.code in PARTY_ERRORS and slot is not None:
            # Said beside the choice it is about, on the page as it was sent (the note kept).
            return _review_page(room, slot, form, now_utc(), {PARTY_ERRORS[exc.code]: exc.message}, 422)
        if exc.code == "suspended":  # for no-shows (services/no_shows.py): say until when
            flash(_("%(message)s You can book online again from %(until)s.", message=exc.message,
                    until=_moment(exc.details["until"])), "error")
        else:
            flash(exc.message, "error")
        if exc.code == "price_changed":
            return redirect(url_for(".review", room_id=room_id, **form.query_args(), **form.party_args()))
        return redirect(_back_to_room(room_id, form, exc))
    # What the answer says, read before the commit expires the booking: nothing is read again after it.
    booking_id, state, pay_mode, pay_by = booking.id, booking.state, booking.pay_mode, booking.hold_expires_at
    decide_by = booking.exemption.decide_by if exemptions.is_pending(booking) else None
    db.session.commit()
    if decide_by is not None:
        flash(_("Your booking is reserved and your exemption application is sent to the facility. They decide by "
                "%(date)s; nothing is charged until then.", date=_moment(decide_by)), "success")
        return redirect(url_for(".detail", booking_id=booking_id))
    if state == BookingState.HELD:  # held for its payment
        if pay_mode == "deadline":
            flash(_("Your booking is reserved. Please pay by %(deadline)s: now, or later from My bookings.",
                    deadline=_moment(pay_by)), "success")
        return redirect(url_for(".pay_page", booking_id=booking_id))
    flash(_("Your booking is confirmed."), "success")
    return redirect(url_for(".detail", booking_id=booking_id))


# --- paying for a hold ----------------------------------------------------------


def _moment(dt) -> str:
    """A moment as the pages show it (public/_macros.html moment): the full date and the Tokyo time."""
    return f"{format_date(dt, 'full')} {tokyo_time(dt)}"


def _pay_urls(booking: Booking, token: str | None = None) -> dict:
    """Where the payment page's form posts, and where it links: My bookings' pages, or the signed link's own."""
    if token is None:
        return {"pay_url": url_for(".pay", booking_id=booking.id),
                "complete_url": url_for(".pay_complete", booking_id=booking.id),
                "page_url": url_for(".pay_page", booking_id=booking.id),
                "back_url": url_for(".detail", booking_id=booking.id)}
    return {"pay_url": url_for(".pay_by_link", token=token),
            "complete_url": url_for(".pay_by_link_complete", token=token),
            "page_url": url_for(".pay_by_link_page", token=token),
            "back_url": None}  # a walk-in has no booking page to go back to


def _render_pay_page(booking: Booking, payment: Payment, now, urls: dict):
    """The card form, once the payment is locked and read again (the expiry job may have released the hold
    since) and has its intent (two tabs never create two); None when the hold is gone (BookingError)."""
    try:
        checkout.open_for_payment(payment, now=now)
    except BookingError as exc:
        db.session.rollback()
        if exc.code == "hold_expired":
            raise
        return render_template("bookings/pay_unavailable.html", booking=booking, message=exc.message, **urls), 503
    db.session.commit()
    gateway = get_gateway()
    return render_template("bookings/pay.html", booking=booking, payment=payment, now=now,
                           js_url=gateway.js_url, publishable_key=gateway.publishable_key,
                           hold_minutes=deadline.hold_minutes(booking.room), **urls)


@bp.get("/bookings/<int:booking_id>/pay")
@writes  # creates the provider intent and commits: a write on SQLite (db_mode)
@login_required
def pay_page(booking_id: int):
    booking = _own_booking_or_404(booking_id)
    now = now_utc()
    if exemptions.is_pending(booking) and booking.hold_is_live(now):
        flash(BookingError("exemption_pending").message, "error")
        return redirect(url_for(".detail", booking_id=booking.id))
    payment = _payment_once_decided(booking, now)
    if payment is not None and payment.state == PaymentState.CAPTURED and _receipt_of(booking):
        return redirect(url_for(".receipt", booking_id=booking.id))
    if payment is None or not booking.hold_is_live(now):
        if booking.state in (BookingState.HELD, BookingState.EXPIRED):
            flash(BookingError("hold_expired").message, "error")
        return redirect(url_for(".detail", booking_id=booking.id))
    try:
        return _render_pay_page(booking, payment, now, _pay_urls(booking))
    except BookingError as exc:  # hold_expired
        if booking.state in (BookingState.HELD, BookingState.EXPIRED):
            flash(exc.message, "error")
        return redirect(url_for(".detail", booking_id=booking.id))


def _payment_once_decided(booking: Booking, now) -> Payment | None:
    """The booking's payment; for a held booking whose exemption staff have decided and that has none yet
    (services/exemptions.py opens it with the decision), opened now."""
    if (booking.payment is None and booking.exemption is not None and booking.price > 0
            and booking.hold_is_live(now) and current_app.config["PAYMENTS_ENABLED"]):
        checkout.start_checkout(booking)
        db.session.flush()
        db.session.refresh(booking)
    return booking.payment


def _exemption_pending():
    """The JSON answer to paying a booking whose exemption waits for staff: nothing can be charged yet."""
    return jsonify(status="error", message=BookingError("exemption_pending").message, retry=False, next=None), 409


def _payment_error(booking: Booking, message: str, status: int):
    """The JSON pay.js shows in its alert region; `retry` says whether the card form may be used again."""
    retry = booking.hold_is_live(now_utc())
    return jsonify(status="error", message=message, retry=retry, next=None if retry else _day_of(booking)), status


def _outcome(booking: Booking, outcome: str, intent=None, *, done_url: str | None = None):
    """The JSON answer for what checkout.pay or checkout.settle reported.

    `done_url` is where a paid or waiting payment goes next (the signed link's page); by default
    the booking's receipt or page in My bookings.
    """
    if booking.state == BookingState.CANCELLED and outcome in ("confirmed", "cancelled"):
        return _payment_error(booking, _("This booking has been cancelled."), 409)
    if outcome == "confirmed":
        flash(_("Thank you. Your booking is confirmed and paid."), "success")
        # The receipt comes with the capture, which may follow a moment later (see checkout.capture_authorised).
        page = ".receipt" if _receipt_of(booking) else ".detail"
        return jsonify(status="confirmed", redirect=done_url or url_for(page, booking_id=booking.id))
    if outcome == "requires_action":
        return jsonify(status="requires_action", client_secret=intent.client_secret)
    if outcome == "refunded":
        if booking.pay_mode == "deadline":
            return _payment_error(booking, _("The payment deadline of this booking has passed and it was "
                                             "cancelled. Your payment has been returned in full."), 409)
        return _payment_error(booking, _("Your hold ran out and the slot was taken by someone else. "
                                         "Your payment has been returned in full."), 409)
    if outcome == "failed_kept":
        return _payment_error(booking, BookingError("card_declined_deadline_kept").message, 402)
    if outcome == "released":
        code = "hold_expired" if booking.state == BookingState.EXPIRED else "authentication_failed"
        return _payment_error(booking, BookingError(code).message, ERROR_STATUS[code])
    # "waiting": the provider is still processing, or the card check was left unfinished.
    if booking.payment.state in (PaymentState.NEW, PaymentState.PENDING) and booking.hold_is_live(now_utc()):
        return _payment_error(booking, _("The payment is not finished. Please pay again."), 409)
    flash(_("Your payment is being processed. We will email you when the booking is confirmed."), "success")
    return jsonify(status="waiting", redirect=done_url or url_for(".detail", booking_id=booking.id)), 202


@bp.post("/bookings/<int:booking_id>/pay")
@login_required
@limits.pay
def pay(booking_id: int):
    if exemptions.is_pending(_own_booking_or_404(booking_id)):
        return _exemption_pending()
    payment = _own_payment_or_404(booking_id)
    return _charge(payment.booking, payment)


def _charge(booking: Booking, payment: Payment, *, done_url: str | None = None):
    """Pay with the card token pay.js posts (JSON), and answer what happened (JSON)."""
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # a body nested thousands deep: not card details either
        data = None
    form = PayForm(formdata=MultiDict(data if isinstance(data, dict) else {}), meta={"csrf": False})
    if not form.validate():
        return _payment_error(booking, _("Please enter your card details."), 400)
    try:
        outcome, intent = checkout.pay(payment, token=form.token.data)
    except BookingError as exc:
        # A declined card released the slot and recorded why: that is kept.
        db.session.commit()
        return _payment_error(booking, exc.message, ERROR_STATUS.get(exc.code, 400))
    except GatewayError:
        # e.g. the capture could not be sent: the provider keeps the authorisation, and the
        # next attempt (or the webhook, or the expiry job) settles it from the provider's state.
        db.session.rollback()
        return _payment_error(booking, BookingError("payment_unavailable").message, 503)
    db.session.commit()
    return _outcome(booking, outcome, intent, done_url=done_url)


@bp.post("/bookings/<int:booking_id>/pay/complete")
@login_required
@limits.pay
def pay_complete(booking_id: int):
    """After the 3-D Secure challenge: the provider's intent says how it went."""
    if exemptions.is_pending(_own_booking_or_404(booking_id)):
        return _exemption_pending()
    payment = _own_payment_or_404(booking_id)
    return _complete(payment.booking, payment)


def _complete(booking: Booking, payment: Payment, *, done_url: str | None = None):
    try:
        outcome = checkout.settle(payment)
    except GatewayError:
        db.session.rollback()
        return _payment_error(booking, BookingError("payment_unavailable").message, 503)
    db.session.commit()
    return _outcome(booking, outcome, done_url=done_url)


# --- paying by the signed link (a counter booking; a walk-in has no account) -----------------------


def _link_not_found():
    message = _("This payment link is not valid, or its payment deadline has passed. "
                "Please contact the facility.")
    if request.method == "POST":  # pay.js shows it in its alert region
        return jsonify(status="error", message=message, retry=False), 404
    return render_template("error.html", message=message), 404


def _payment_of_link(booking: Booking) -> Payment | None:
    """The booking's card payment, opened now if staff booked it without one (place_hold at the counter)."""
    if booking.payment is None and booking.price > 0 and booking.state == BookingState.HELD:
        checkout.start_checkout(booking)
        db.session.flush()
        db.session.refresh(booking)
    return booking.payment


@bp.get("/pay/<token>")
@writes  # opens the payment and its provider intent, and commits
def pay_by_link_page(token: str):
    """The checkout of one deadline booking, without logging in: the signed link is the key (services/deadline.py)."""
    now = now_utc()
    booking = deadline.booking_of_link(token, now=now)
    if booking is None:
        return _link_not_found()
    if booking.state == BookingState.CONFIRMED:
        return render_template("bookings/paid_by_link.html", booking=booking, receipt=_receipt_of(booking))
    if not booking.hold_is_live(now):
        return _link_not_found()
    if exemptions.is_pending(booking):
        return render_template("error.html", message=BookingError("exemption_pending").message), 409
    payment = _payment_of_link(booking)
    if payment is None or payment.state == PaymentState.CAPTURED:
        return _link_not_found()
    try:
        return _render_pay_page(booking, payment, now, _pay_urls(booking, token))
    except BookingError:  # hold_expired: released meanwhile
        return _link_not_found()


@bp.post("/pay/<token>")
@limits.pay
def pay_by_link(token: str):
    booking = deadline.booking_of_link(token)
    if booking is not None and exemptions.is_pending(booking):
        return _exemption_pending()
    if booking is None or booking.payment is None:
        return _link_not_found()
    return _charge(booking, booking.payment, done_url=url_for(".pay_by_link_page", token=token))


@bp.post("/pay/<token>/complete")
@limits.pay
def pay_by_link_complete(token: str):
    # After 3-D Secure the deadline may have passed meanwhile: the provider is asked all the same, and a
    # payment that came too late is returned (and said so), never left without an answer.
    booking = deadline.booking_of_link(token, expired_too=True)
    if booking is None or booking.payment is None:
        return _link_not_found()
    return _complete(booking, booking.payment, done_url=url_for(".pay_by_link_page", token=token))


@bp.get("/bookings/<int:booking_id>/receipt")
@login_required
def receipt(booking_id: int):
    booking = _own_booking_or_404(booking_id)
    issued = _receipt_of(booking)
    if issued is None:
        abort(404)
    return render_template("bookings/receipt.html", booking=booking, receipt=issued)


# --- my bookings ------------------------------------------------------------------


@bp.get("/bookings")
@login_required
def mine():
    bookings = db.session.scalars(
        select(Booking)
        .where(Booking.user_id == current_user.id, Booking.kind == "booking")  # not staff's blocks
        .options(joinedload(Booking.room).joinedload(Room.building), selectinload(Booking.payment),
                 selectinload(Booking.exemption), selectinload(Booking.group))
        .order_by(Booking.start_at, Booking.id)
    ).all()
    now = now_utc()
    upcoming = [b for b in bookings if b.state in ACTIVE_STATES and b.end_at > now]
    others = [b for b in reversed(bookings) if b not in upcoming]
    return render_template("bookings/mine.html", upcoming=upcoming, others=others, now=now,
                           suspension=no_shows.suspension_in_force(current_user, now))


def _payable(booking: Booking, now) -> bool:
    """The booking page offers "Pay now": a live hold with its payment (or, once its exemption is decided, one
    the pay page opens), never while the exemption waits for staff."""
    if not booking.hold_is_live(now) or exemptions.is_pending(booking):
        return False
    return booking.payment is not None or (booking.exemption is not None and booking.price > 0
                                           and current_app.config["PAYMENTS_ENABLED"])


@bp.get("/bookings/<int:booking_id>")
@login_required
def detail(booking_id: int):
    booking = _own_booking_or_404(booking_id)
    now = now_utc()
    payment = booking.payment
    schedule = refund_policy.refund_schedule(booking.room, booking.start_at)
    return render_template(
        "bookings/detail.html",
        booking=booking,
        payment=payment,
        receipt=_receipt_of(booking),
        hold_live=_payable(booking, now),
        exemption_pending=exemptions.is_pending(booking) and booking.hold_is_live(now),
        cancellable=booking.state in ACTIVE_STATES and now < booking.start_at,
        refund_now=refund_policy.refund_if_cancelled(booking, now, schedule),
        refund_schedule=schedule,
        now=now,
        form=CancelForm(),
        history=audit_trail.for_resident(booking),  # time and action only: never a staff note or name
    )


@bp.post("/bookings/<int:booking_id>/cancel")
@login_required
def cancel(booking_id: int):
    booking = _own_booking_or_404(booking_id)
    if not CancelForm().validate_on_submit():
        abort(400)
    try:
        refund = cancellation.cancel_booking(booking, current_user._get_current_object())
    except BookingError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return redirect(url_for(".detail", booking_id=booking_id))
    db.session.commit()
    if refund is not None:
        flash(_("Your booking has been cancelled. %(amount)s will be refunded to your card.",
                amount=yen(refund.amount)), "success")
    elif booking.payment is not None and booking.payment.state == PaymentState.CAPTURED:
        flash(_("Your booking has been cancelled. Under the cancellation policy there is no refund."), "success")
    else:
        flash(_("Your booking has been cancelled."), "success")
    return redirect(url_for(".detail", booking_id=booking_id))
