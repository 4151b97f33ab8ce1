"""Forms of the resident's lottery pages: one ranked choice, a new rank, the withdraw button (all POST, CSRF)."""
from flask_wtf import FlaskForm
from wtforms import DateField, IntegerField, SelectField, SelectMultipleField, TextAreaField
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from ..account.forms import TOO_LONG, trim
from ..i18n import lazy_gettext as _l
from ..public.forms import INVALID_DATE
from ..services.errors import BookingError
from ..services.lottery.applications import Part

EXEMPTION_NOTE_MAX = 1000
# Which field a refusal of the service is about; any other is said at the top of the form.
ERROR_FIELDS = {
    "not_group_member": "apply_as",
    "invalid_date": "day",
    "lottery_wrong_month": "day",
    "closed": "day",
    "invalid_divisions": "slots",
    "lottery_empty_choice": "slots",
    "lottery_room_twice": "slots",
    "lottery_wrong_room": "slots",
    "lottery_too_many_koma": "slots",
    "lottery_one_party_per_slot": "slots",
    "lottery_duplicate_choice": "slots",
    "lottery_rank_taken": "rank",
    "exemption_not_eligible": "exemption",
}


def chosen_id(value: str | None) -> int | None:
    """An id sent in a select, or None when nothing (or nothing like an id) was sent."""
    value = (value or "").strip()
    return int(value) if value.isdigit() and len(value) < 10 else None


class ApplyForm(FlaskForm):
    """One ranked choice: who applies (the resident, "", or one of their groups, its id), a day of the round's
    month, the divisions of one room or of several the same day ("<room id>:<division>", a bundle won whole),
    a rank ("" for the next free one) and an exemption kind (its id, or "") with a note. The choices are set
    by the view; what was sent is judged by the service (services/lottery/applications.py)."""

    apply_as = SelectField(_l("Apply as"), validate_choice=False, validators=[Optional()])
    day = DateField(_l("Day of use"), validators=[InputRequired(message=INVALID_DATE)],
                    render_kw={"required": True})
    slots = SelectMultipleField(_l("Rooms and divisions"), validate_choice=False)
    rank = SelectField(_l("Rank of this choice"), validate_choice=False, validators=[Optional()])
    exemption = SelectField(_l("Exemption"), validate_choice=False, validators=[Optional()])
    exemption_note = TextAreaField(_l("Note for the facility (optional)"), filters=[trim], validators=[
        Optional(), Length(max=EXEMPTION_NOTE_MAX, message=TOO_LONG)])

    def parts(self) -> list[Part]:
        """The bundle asked for, one Part per room, in the order of the rooms' ids."""
        codes: dict[int, list[str]] = {}
        for value in self.slots.data or []:
            room, _sep, code = str(value).partition(":")
            if not room.isdigit() or len(room) > 9 or not code:
                raise BookingError("invalid_divisions")
            codes.setdefault(int(room), []).append(code)
        return [Part(room_id, tuple(codes[room_id])) for room_id in sorted(codes)]

    def chosen_rank(self) -> int | None:
        return chosen_id(self.rank.data)

    def show_refusal(self, error: BookingError) -> None:
        """Put the service's message beside the field it is about (or at the top), keeping what was sent."""
        name = ERROR_FIELDS.get(error.code)
        if name is None:
            self.form_errors.append(error.message)
        else:
            self[name].errors = [*self[name].errors, error.message]


class RankForm(FlaskForm):
    rank = IntegerField(_l("Rank"), validators=[InputRequired(), NumberRange(min=1, max=1000)])


class WithdrawForm(FlaskForm):
    """The withdraw button: nothing but the CSRF token."""
