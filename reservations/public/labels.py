"""Words for the codes residents see: room kinds, divisions, states, marks.

One place, so that every page says the same thing and the catalog has one
msgid per label. Registered as Jinja globals by the public blueprint.
"""
from babel.dates import get_day_names
from flask_babel import get_locale, pgettext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..models import BookingState, Building, Residency, Room, RoomKind
from ..services import availability, receipts

KINDS = {
    RoomKind.HALL: _l("Hall"),
    RoomKind.MUSIC_ROOM: _l("Music room"),
    RoomKind.MEETING_ROOM: _l("Meeting room"),
    RoomKind.JAPANESE_ROOM: _l("Japanese-style room"),
    RoomKind.GYM: _l("Gym"),
    RoomKind.COURT: _l("Court"),
    RoomKind.KITCHEN: _l("Cooking room"),
    RoomKind.STUDIO: _l("Studio"),
    RoomKind.OTHER: _l("Other"),
}

DIVISIONS = {
    "MORNING": _l("Morning"),
    "AFTERNOON": _l("Afternoon"),
    "EVENING": _l("Evening"),
    "MORNING_ONE": _l("Morning 1"),
    "MORNING_TWO": _l("Morning 2"),
    "AFTERNOON_ONE": _l("Afternoon 1"),
    "AFTERNOON_TWO": _l("Afternoon 2"),
    "EVENING_ONE": _l("Evening 1"),
    "EVENING_TWO": _l("Evening 2"),
    "DIVISION_1": _l("Division 1"),
    "DIVISION_2": _l("Division 2"),
    "DIVISION_3": _l("Division 3"),
    "DIVISION_4": _l("Division 4"),
    "DIVISION_5": _l("Division 5"),
    "DIVISION_6": _l("Division 6"),
}

STATES = {
    BookingState.HELD: _l("Held"),
    BookingState.CONFIRMED: _l("Confirmed"),
    BookingState.CANCELLED: _l("Cancelled"),
    BookingState.EXPIRED: _l("Expired"),
    BookingState.COMPLETED: _l("Completed"),
    BookingState.NO_SHOW: _l("No-show"),
}

RESIDENCIES = {
    Residency.RESIDENT: _l("Lives in the ward"),
    Residency.WORKER: _l("Works in the ward"),
    Residency.STUDENT: _l("Studies in the ward"),
    Residency.OUTSIDE: _l("Non-resident"),
}

# Equipment a room has, or a kind of music it allows (RoomEquipment.code).
EQUIPMENT = {
    "piano": _l("Piano"),
    "music_stand": _l("Music stands"),
    "strings": _l("Strings allowed"),
    "woodwind": _l("Woodwind allowed"),
    "brass": _l("Brass allowed"),
    "percussion": _l("Percussion allowed"),
}

# The calendar marks, and the words a screen reader says for them.
MARKS = {
    availability.FREE: _l("free"),
    availability.PARTLY: _l("partly free"),
    availability.FULL: _l("full"),
    availability.CLOSED: _l("closed"),
    availability.OUTSIDE: _l("not bookable online"),
}
MARK_CLASSES = {
    availability.FREE: "free",
    availability.PARTLY: "partly",
    availability.FULL: "full",
    availability.CLOSED: "closed",
    availability.OUTSIDE: "outside",
}

UNIT_STATUSES = {
    "free": _l("Free"),
    "taken": _l("Taken"),
    "outside": _l("Not bookable online"),
    "closed": _l("Closed"),
}

CLOSURES = {
    "year_end": _l("Year-end break"),
    "weekly": _l("Regular closing day"),
    "monthly": _l("Regular closing day"),
    "period": _l("Closed for maintenance"),
}

ORDINALS = {1: _l("1st"), 2: _l("2nd"), 3: _l("3rd"), 4: _l("4th"), 5: _l("5th")}


def _lookup(table: dict, code: str | None) -> str:
    return str(table.get(code, code or ""))


def kind_label(code: str) -> str:
    return _lookup(KINDS, code)


def division_label(code: str) -> str:
    return _lookup(DIVISIONS, code)


def state_label(code: str) -> str:
    return _lookup(STATES, code)


def residency_label(code: str) -> str:
    return _lookup(RESIDENCIES, code)


def equipment_label(code: str) -> str:
    return _lookup(EQUIPMENT, code)


def mark_label(mark: str) -> str:
    return _lookup(MARKS, mark)


def mark_symbol(mark: str) -> str:
    """The mark as printed in the calendar. ○ △ × — read the same in any language, but 休 is a
    Japanese word: English readers see "Closed" (ja keeps 休 through the catalog)."""
    if mark == availability.CLOSED:
        return pgettext("calendar mark", "Closed")
    return mark


def mark_class(mark: str) -> str:
    return MARK_CLASSES.get(mark, "")


def unit_status_label(status: str) -> str:
    return _lookup(UNIT_STATUSES, status)


def closure_label(reason: str | None) -> str:
    """A closure reason from the rules: a known code, or the facility's own words."""
    return _lookup(CLOSURES, reason)


def weekday_name(weekday: int, width: str = "wide") -> str:
    """Monday = 0, in the current language."""
    return get_day_names(width, locale=get_locale())[weekday]


def ordinal(n: int) -> str:
    return _lookup(ORDINALS, n)


def price_line_label(item: str, multiplier_pct: int | None = None) -> str:
    """A line of a quote: a division code, "120min" for an hourly room, or the non-resident surcharge."""
    if item == "nonresident":
        if multiplier_pct:
            return _("Non-resident surcharge (×%(factor)s)", factor=multiplier_text(multiplier_pct))
        return _("Non-resident surcharge")
    if item.endswith("min") and item[:-3].isdigit():
        return duration_label(int(item[:-3]))
    return division_label(item)


def duration_label(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    if not rest:
        return _("%(hours)d h", hours=hours)
    if not hours:
        return _("%(minutes)d min", minutes=rest)
    return _("%(hours)d h %(minutes)d min", hours=hours, minutes=rest)


def multiplier_text(pct: int) -> str:
    """150 -> "1.5", 200 -> "2"."""
    return f"{pct / 100:g}"


def current_language() -> str:
    return str(get_locale() or "ja")


def room_name(room: Room) -> str:
    return room.display_name(current_language())


def building_name(building: Building) -> str:
    if current_language() == "en" and building.name_en:
        return building.name_en
    return building.name


def receipt_issuer(receipt) -> str:
    return receipts.issuer_name(receipt, current_language())


GLOBALS = {
    "get_locale": get_locale,
    "kind_label": kind_label,
    "division_label": division_label,
    "state_label": state_label,
    "residency_label": residency_label,
    "equipment_label": equipment_label,
    "mark_label": mark_label,
    "mark_symbol": mark_symbol,
    "mark_class": mark_class,
    "unit_status_label": unit_status_label,
    "closure_label": closure_label,
    "weekday_name": weekday_name,
    "ordinal": ordinal,
    "price_line_label": price_line_label,
    "duration_label": duration_label,
    "multiplier_text": multiplier_text,
    "room_name": room_name,
    "building_name": building_name,
    "receipt_issuer": receipt_issuer,
}
