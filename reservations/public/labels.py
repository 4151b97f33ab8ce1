"""Words for the codes residents see: room kinds, divisions, states, marks.

One place, so that every page says the same thing and the catalog has one
msgid per label. Registered as Jinja globals by the public blueprint.
"""
import re
from functools import lru_cache, wraps

from babel.dates import get_day_names
from flask_babel import format_date
from markupsafe import Markup

from ..i18n import current_language, page_locale, pgettext
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
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
    availability.LOTTERY: _l("lottery"),
}
MARK_CLASSES = {
    availability.FREE: "free",
    availability.PARTLY: "partly",
    availability.FULL: "full",
    availability.CLOSED: "closed",
    availability.OUTSIDE: "outside",
    availability.LOTTERY: "lottery",
}

UNIT_STATUSES = {
    "free": _l("Free"),
    "taken": _l("Taken"),
    "outside": _l("Not bookable online"),
    "closed": _l("Closed"),
    "lottery": _l("By lottery"),
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


def per_locale(label):
    """Memoise a label function of plain values by the page's language as well: a calendar asks the same few
    labels hundreds of times a page (a month's marks, a ward's room kinds), and each gettext costs more than
    the cell around it. Only for functions whose words depend on nothing but their arguments and the
    language (the catalogs are read once per process), never on the database."""
    cached = lru_cache(maxsize=2048)(lambda language, *args: label(*args))

    @wraps(label)
    def in_language(*args):
        return cached(current_language(), *args)

    in_language.cache_clear = cached.cache_clear
    in_language.said_in = cached  # (language, *args): for a caller that has asked the language once already
    return in_language


@per_locale
def kind_label(code: str) -> str:
    return _lookup(KINDS, code)


@per_locale
def division_label(code: str) -> str:
    return _lookup(DIVISIONS, code)


@per_locale
def state_label(code: str) -> str:
    return _lookup(STATES, code)


# Audit actions in words, for the history on a booking's page and the staff's audit search;
# a state change "a->b" is said as "A → B".
AUDIT_ACTIONS = {
    ("booking", "held"): _l("Booking made (held)"),
    ("booking", "confirmed"): _l("Booking made (confirmed)"),
    ("booking", "cancelled for a ward reason"): _l("Cancelled by the facility"),
    ("booking", "cancelled by staff"): _l("Cancelled by the facility"),
    ("booking", "booked at the counter"): _l("Booked at the counter"),
    ("booking", "moved"): _l("Moved to another time or room"),
    ("booking", "payment reminder sent"): _l("Payment reminder sent"),
    ("booking", "told: ended unpaid at the payment deadline"): _l("Ended unpaid at the payment deadline"),
    ("booking", "blocked"): _l("Time blocked by staff"),
    ("booking", "block lifted"): _l("Block lifted"),
    ("payment", "created"): _l("Payment started"),
    ("payment", "paid at the counter"): _l("Paid at the counter"),
    ("payment", "refund requested"): _l("Refund requested"),
    ("payment", "refund paid out at the counter"): _l("Refund paid out at the counter"),
    ("payment", "refund sent"): _l("Refund sent to the payment provider"),
    ("payment", "refund succeeded"): _l("Refunded"),
    ("payment", "refund failed"): _l("Refund failed"),
    ("payment", "refund cancelled"): _l("Refund cancelled"),
    ("payment", "refund recorded from the provider"): _l("Refund recorded"),
    ("payment", "refund retries exhausted"): _l("Refund not sent after every retry"),
    ("attention_case", "opened"): _l("Case opened for staff"),
    ("attention_case", "resolved"): _l("Case resolved"),
    ("room", "feed_created"): _l("Calendar feed made"),
    ("room", "feed_rotated"): _l("Calendar feed address changed"),
    ("booking", "kept over a closure"): _l("Kept as an exception to a closure"),
    ("building", "created"): _l("Building added"),
    ("building", "updated"): _l("Building details changed"),
    ("room", "created"): _l("Room added"),
    ("room", "details changed"): _l("Room details changed"),
    ("room", "rules changed"): _l("Booking rules, hold time or payment mode changed"),
    ("room", "letting changed"): _l("How the room is let, or its opening hours, changed"),
    ("division", "created"): _l("Time division added"),
    ("division", "updated"): _l("Time division or its fees changed"),
    ("division", "removed"): _l("Time division removed"),
    ("closure", "created"): _l("Closure added"),
    ("closure", "removed"): _l("Closure removed"),
    ("refund_tier", "room tiers replaced"): _l("Refund policy changed"),
    ("suspension", "suspended"): _l("Online booking suspended after no-shows"),
    ("suspension", "lifted"): _l("Suspension lifted"),
    ("user", "walk-in recorded"): _l("Walk-in recorded at the counter"),
    ("day_close", "closed"): _l("Day closed (daily report locked)"),
    ("finance_export", "exported"): _l("Ledger exported"),
    ("reconciliation_run", "ran"): _l("Reconciled with Stripe"),
    ("reconciliation_run", "failed"): _l("Reconciliation could not reach Stripe"),
    ("reconciliation_run", "payout report imported"): _l("Payout report imported"),
    ("payment", "charged without booking found"): _l("Charge found at Stripe without a confirmed booking"),
    ("payment", "charged without booking: confirmed"): _l("Charge without a booking: booking confirmed"),
    ("payment", "charged without booking: refunded"): _l("Charge without a booking: refunded"),
    ("payment", "charged without booking: released"): _l("Charge without a booking: authorisation released"),
    ("booking", "exemption requested"): _l("Exemption applied for (waiting for staff)"),
    ("booking", "exemption applied"): _l("Exemption applied"),
    ("booking", "exemption approved"): _l("Exemption approved"),
    ("booking", "exemption refused"): _l("Exemption refused"),
    ("exemption_kind", "created"): _l("Exemption kind added"),
    ("exemption_kind", "updated"): _l("Exemption kind changed"),
    ("group", "applied"): _l("Group registration applied for"),
    ("group", "new findings"): _l("Identity checks found something new"),
    ("group", "approved"): _l("Group registration approved"),
    ("group", "rejected"): _l("Group registration rejected"),
    ("group", "suspended"): _l("Group suspended"),
    ("group", "reinstated"): _l("Group suspension lifted"),
    ("group", "renewal requested"): _l("Renewal requested"),
    ("group", "renewal approved"): _l("Renewal approved"),
    ("group", "renewal reminder sent"): _l("Renewal reminder mailed"),
    ("group", "expired"): _l("Registration expired"),
    ("lottery_rule", "created"): _l("Lottery rule of the room set"),
    ("lottery_rule", "changed"): _l("Lottery rule of the room changed"),
    ("lottery_round", "created"): _l("Lottery round made (draft)"),
    ("lottery_round", "changed"): _l("Lottery round's dates or caps changed"),
    ("lottery_round", "draft->open"): _l("Lottery round opened for applications"),
    ("lottery_round", "open->closed"): _l("Applications closed and frozen (manifest hashed, secret committed)"),
    ("lottery_round", "public value fixed"): _l("Public value fixed"),
    ("lottery_round", "closed->drawn"): _l("Draw run"),
    ("lottery_round", "drawn->published"): _l("Results published; wins let as bookings"),
    ("lottery_round", "published->settling"): _l("Pay-by date passed: the round settles"),
    ("lottery_round", "settling->released"): _l("Round released: what is left opens first-come"),
    ("lottery_application", "filed"): _l("Lottery application filed"),
    ("lottery_application", "rank changed"): _l("Lottery application's rank changed"),
    ("lottery_application", "withdrawn"): _l("Lottery application withdrawn"),
    ("lottery_application", "win unavailable"): _l("Win could not be let (slot closed or taken)"),
    ("lottery_application", "win cancelled"): _l("Win cancelled by staff"),
    ("lottery_application", "losers told"): _l("Those who lost the freed slot told"),
}
# A payment's states, in the words of a payment's history.
PAYMENT_STATES = {
    "new": _l("Not started"),
    "pending": _l("Waiting for payment"),
    "authorized": _l("Card authorised"),
    "captured": _l("Paid"),
    "failed": _l("Not paid"),
    "cancelled": _l("Released"),
}


def audit_action_label(subject: str, action: str) -> str:
    if "->" in action and subject in ("booking", "payment"):
        before, after = action.split("->", 1)
        if subject == "booking":
            return f"{state_label(before)} → {state_label(after)}"
        change = f"{_lookup(PAYMENT_STATES, before)} → {_lookup(PAYMENT_STATES, after)}"
        return _("Payment: %(change)s", change=change)
    if subject == "payment" and action.startswith("dispute "):
        return _("Dispute: %(status)s", status=action.removeprefix("dispute "))
    label = AUDIT_ACTIONS.get((subject, action))
    return str(label) if label else f"{subject}: {action}"


def residency_label(code: str) -> str:
    return _lookup(RESIDENCIES, code)


def equipment_label(code: str) -> str:
    return _lookup(EQUIPMENT, code)


@per_locale
def mark_label(mark: str) -> str:
    return _lookup(MARKS, mark)


@per_locale
def mark_symbol(mark: str) -> str:
    """The mark as printed in the calendar. ○ △ × — read the same in any language, but 休 is a
    Japanese word: English readers see "Closed" (ja keeps 休 through the catalog)."""
    if mark == availability.CLOSED:
        return pgettext("calendar mark", "Closed")
    if mark == availability.LOTTERY:  # 抽選 in Japanese, said once with its label (mark_and_label)
        return pgettext("calendar mark", "Lottery")
    return mark


def mark_class(mark: str) -> str:
    return MARK_CLASSES.get(mark, "")


@per_locale
def unit_status_label(status: str) -> str:
    return _lookup(UNIT_STATUSES, status)


@per_locale
def closure_label(reason: str | None) -> str:
    """A closure reason from the rules: a known code, or the facility's own words."""
    return _lookup(CLOSURES, reason)


# How a calendar cell names its day to a screen reader: "12月16日（水）空きあり", "Wednesday 16 December, available".
DAY_CELL_PATTERNS = {"ja": "M月d日（E）", "en": "EEEE d MMMM"}


@per_locale
def calendar_day_label(day, mark: str, closure: str | None = None) -> Markup:
    """A day of the month calendar, said as a whole: its date, weekday and state (and why it is closed).
    A closure's reason in the facility's own Japanese words is marked as Japanese on an English page."""
    date_text = format_date(day, DAY_CELL_PATTERNS.get(current_language(), DAY_CELL_PATTERNS["en"]))
    state = Markup.escape(mark_label(mark))
    if closure:
        reason = closure_label(closure)
        lang = catalog_lang(reason)
        reason = Markup("<span{}>{}</span>").format(lang, reason) if lang else Markup.escape(reason)
        state = Markup(_("%(state)s (%(reason)s)")) % {"state": state, "reason": reason}
    return Markup(_("%(date)s, %(state)s")) % {"date": date_text, "state": state}


def weekday_name(weekday: int, width: str = "wide") -> str:
    """Monday = 0, in the current language."""
    return get_day_names(width, locale=page_locale())[weekday]


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


def room_name(room: Room) -> str:
    return room.display_name(current_language())


def building_name(building: Building) -> str:
    if current_language() == "en" and building.name_en:
        return building.name_en
    return building.name


def hiragana(kana: str) -> str:
    """A catalog's katakana reading as the hiragana furigana is printed in: チュウオウ -> ちゅうおう."""
    return "".join(chr(ord(c) - 0x60) if "\u30a1" <= c <= "\u30f6" else c for c in kana)


def _shown_name(japanese: str, kana: str | None, english: str | None, *, with_japanese: bool = False) -> Markup:
    """A catalog name for the page's body: its English name on an English page where the catalog has one,
    else the Japanese name, marked lang="ja" on an English page (so a screen reader reads it in Japanese)
    and with its reading as ruby where the catalog has one. `with_japanese` adds the Japanese name after
    an English one (a page's heading: the name on the facility's signs). Never for <title>: use room_name."""
    return _name_markup(japanese, kana, english, with_japanese)


@per_locale
def _name_markup(japanese: str, kana: str | None, english: str | None, with_japanese: bool) -> Markup:
    """_shown_name, memoised by the names themselves (a renamed room is a new key) and the language."""
    if kana:
        ruby = Markup("<ruby>{}<rp>（</rp><rt>{}</rt><rp>）</rp></ruby>").format(japanese, hiragana(kana))
    else:
        ruby = Markup.escape(japanese)
    if current_language() != "en":
        return ruby
    if not english:
        return Markup('<span lang="ja">{}</span>').format(ruby)
    if with_japanese and english != japanese:
        return Markup('{} <small lang="ja">{}</small>').format(english, ruby)
    return Markup.escape(english)


JAPANESE = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")


def catalog_lang(text: str | None) -> Markup:
    """The attribute for catalog text in Japanese (an address, a closure's reason) on an English page,
    so a screen reader reads it in Japanese. Text the facility wrote in English is left alone."""
    if current_language() == "en" and text and JAPANESE.search(text):
        return Markup(' lang="ja"')
    return Markup("")


def room_label(room: Room, with_japanese: bool = False) -> Markup:
    return _shown_name(room.name, room.name_kana, room.name_en, with_japanese=with_japanese)


def building_label(building: Building, with_japanese: bool = False) -> Markup:
    return _shown_name(building.name, building.name_kana, building.name_en, with_japanese=with_japanese)


def card_names(rooms) -> list[tuple[Markup, Markup]]:
    """room_label and building_label of many rooms (a search's cards), the page's language asked once."""
    language, name = current_language(), _name_markup.said_in
    return [(name(language, r.name, r.name_kana, r.name_en, False),
             name(language, r.building.name, r.building.name_kana, r.building.name_en, False)) for r in rooms]


def receipt_issuer(receipt) -> str:
    return receipts.issuer_name(receipt, current_language())


GLOBALS = {
    "get_locale": page_locale,  # what Flask-Babel chose, read once (reservations/i18n.py)
    "kind_label": kind_label,
    "division_label": division_label,
    "state_label": state_label,
    "audit_action_label": audit_action_label,
    "residency_label": residency_label,
    "equipment_label": equipment_label,
    "mark_label": mark_label,
    "mark_symbol": mark_symbol,
    "mark_class": mark_class,
    "unit_status_label": unit_status_label,
    "closure_label": closure_label,
    "weekday_name": weekday_name,
    "calendar_day_label": calendar_day_label,
    "ordinal": ordinal,
    "price_line_label": price_line_label,
    "duration_label": duration_label,
    "multiplier_text": multiplier_text,
    "room_name": room_name,
    "building_name": building_name,
    "room_label": room_label,
    "catalog_lang": catalog_lang,
    "building_label": building_label,
    "receipt_issuer": receipt_issuer,
}
