"""Domain errors: each carries a code (for tests and logs) and a message for people."""
from ..i18n import lazy_gettext as _l

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
    "lottery_no_tier": _l("Say which tiers may apply, and from when."),
    "lottery_window_order": _l(
        "The dates must follow each other: applications open, close, the draw, publication, pay-by, release."
    ),
    "lottery_no_rooms": _l("Choose at least one room for the round."),
    "lottery_room_taken": _l("One of these rooms already has a lottery round for that month."),
    "lottery_frozen": _l("The round is closed: its dates and caps can no longer change."),
    "lottery_wrong_state": _l("The round is not at the step this needs."),
    "lottery_not_closed_yet": _l("Applications are still open until the end of the closing day."),
    "lottery_public_value_missing": _l("Enter the public value first."),
    "lottery_public_value_early": _l("The public value must be fixed after the close was committed."),
    "lottery_too_early": _l("It is not yet time for this step of the round."),
    "lottery_draw_refused": _l("The draw was refused: %(detail)s"),
    "lottery_public_value_fixed": _l("The public value is already fixed; it cannot be chosen again."),
    "lottery_reason_required": _l("Give a reason."),
    "lottery_not_a_win": _l("Only a published win can be cancelled."),
    "lottery_not_accepting": _l("This round is not taking applications from you now."),
    "lottery_empty_choice": _l("Choose at least one room and division."),
    "lottery_wrong_month": _l("Choose a day in the month this round lets."),
    "lottery_room_twice": _l("A choice names each room once."),
    "lottery_wrong_room": _l("That room is not in this round."),
    "lottery_too_many_koma": _l("One choice may take at most %(limit)s divisions."),
    "lottery_one_party_per_slot": _l(
        "You have already applied for this slot under another name (as yourself or for a group). "
        "One person applies once for a slot."
    ),
    "lottery_too_many_applications": _l("You have reached the most applications this round allows (%(limit)s)."),
    "lottery_duplicate_choice": _l("You have already applied for exactly these slots."),
    "lottery_rank_taken": _l("Choose a free rank for this choice."),
    "lottery_withdrawn": _l("This application was withdrawn."),
    "email_unverified": _l("Please confirm your e-mail address before booking. We sent you a link."),
}


class CodedError(Exception):
    """An error with a code (for tests and logs) and, from its class's MESSAGES, a message for people, with the
    details given interpolated (e.g. %(limit)s)."""

    MESSAGES: dict = {}

    def __init__(self, code: str, **details):
        super().__init__(code)
        self.code = code
        self.details = details

    @property
    def message(self) -> str:
        text = str(self.MESSAGES.get(self.code, self.code))
        try:
            return text % self.details if "%(" in text else text
        except (KeyError, TypeError, ValueError):
            return text


class BookingError(CodedError):
    MESSAGES = MESSAGES
