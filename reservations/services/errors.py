"""Domain errors: each carries a code (for tests and logs) and a message for people."""
from flask_babel import lazy_gettext as _l

MESSAGES = {
    "invalid_date": _l("That date is not valid."),
    "past": _l("That time has already passed."),
    "closed": _l("The room is closed on that day."),
    "outside_hours": _l("That time is outside the room's opening hours."),
    "invalid_divisions": _l("Choose one division or several consecutive divisions."),
    "invalid_duration": _l("That duration is not allowed for this room."),
    "not_open_yet": _l("Booking for that day has not opened yet."),
    "window_closed": _l("Online booking for that time has closed."),
    "not_bookable": _l("This room cannot be booked online yet."),
    "slot_taken": _l("This slot was just taken. Please choose another."),
    "too_many": _l("You have reached the maximum number of active bookings."),
    "price_changed": _l("The price has changed. Please check the new price and try again."),
    "cancel_deadline": _l("The cancellation deadline has passed. Please contact the facility."),
    "not_cancellable": _l("This booking cannot be cancelled."),
    "staff_only": _l("Only staff can do this."),
    "payment_unavailable": _l(
        "The payment service cannot be reached right now. Nothing was charged; please try again in a moment."
    ),
    "card_declined": _l("Your card was declined. Nothing was charged and the slot was released."),
    "card_declined_hold_kept": _l(
        "Your card was declined. Nothing was charged. You may try another card while your hold lasts."
    ),
    "card_declined_deadline_kept": _l(
        "Your card was declined, or its check (3-D Secure) failed. Nothing was charged. Your booking stays "
        "reserved: you may pay with another card until the payment deadline."
    ),
    "authentication_failed": _l("The card authentication (3-D Secure) failed. Nothing was charged."),
    "hold_expired": _l("Your hold on this slot has run out. Nothing was charged; please book again."),
    "over_refund": _l("A refund cannot exceed what was paid."),
    "payment_failed": _l("The payment did not go through. Nothing was charged."),
    "too_many_holds": _l(
        "You already have the most bookings allowed waiting for payment. Please pay for or cancel one first."
    ),
    "too_many_in_room": _l("You have reached the maximum number of active bookings for this room."),
    "suspended": _l(
        "Online booking is suspended for your account after missed bookings (no-shows). "
        "Please contact the facility."
    ),
    "slip_required": _l("Enter the slip number the card terminal printed."),
    "online_payment_in_progress": _l(
        "An online card payment for this booking is in progress. "
        "Cancel it, or wait for it, before taking money at the counter."
    ),
    "not_group_member": _l(
        "You cannot book or apply for that group: it is not active, or you are not one of its members."
    ),
    "exemption_not_eligible": _l("That exemption cannot be used for this booking."),
    "exemption_too_late": _l(
        "An exemption that needs approval cannot be applied for this close to the day of use. "
        "Please apply at the facility's counter."
    ),
    "exemption_pending": _l(
        "The exemption for this booking is waiting for staff. Nothing is due until they decide."
    ),
    "lottery": _l(
        "This day is let by lottery: it opens for first-come booking when the lottery's results are released."
    ),
    "email_unverified": _l("Please confirm your e-mail address before booking. We sent you a link."),
}


class BookingError(Exception):
    def __init__(self, code: str, **details):
        super().__init__(code)
        self.code = code
        self.details = details

    @property
    def message(self) -> str:
        return str(MESSAGES.get(self.code, self.code))
