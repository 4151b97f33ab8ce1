"""What the resident's lottery pages show, read from the services: a round's published draw as tables (by
party and by slot, pseudonyms only), the signed-in resident's own parties in it, and their applications as
My bookings lists them."""
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import or_, select

from ..extensions import db
from ..i18n import gettext as _
from ..models import (
    Booking,
    BookingState,
    LotteryApplication,
    LotteryParty,
    LotteryRound,
    Outcome,
    Room,
    RoundState,
    User,
)
from ..services.exemptions import is_pending
from ..services.groups import acting_groups
from ..services.lottery.applications import applications_of
from ..services.lottery.rounds import accepting, live_applications, win_bookings
from ..timeutil import business_date, now_utc
from .labels import is_published, moment

# --- slots, as the draw names them ("<room id>/<day>/<division>") -----------------------------------------


@dataclass(frozen=True)
class SlotRef:
    id: str
    room: Room | None
    day: date | None
    code: str

    def sort_key(self) -> tuple:
        position = next((d.position for d in self.room.divisions if d.code == self.code), 99) if self.room else 99
        return (self.day or date.min, self.room.id if self.room else 0, position, self.id)


def slot_ref(slot_id: str, rooms: dict[int, Room]) -> SlotRef:
    room_part, _sep, rest = slot_id.partition("/")
    day_part, _sep, code = rest.partition("/")
    room = rooms.get(int(room_part)) if room_part.isdigit() else None
    try:
        day = date.fromisoformat(day_part)
    except ValueError:
        day = None
    return SlotRef(slot_id, room, day, code)


# --- the published draw --------------------------------------------------------------------------------


@dataclass
class PartyRow:
    position: int
    pseudonym: str
    tier: int
    choices: int
    wins: list[tuple[int, list[SlotRef]]]  # (rank, its slots)
    yours: bool = False


@dataclass
class SlotRow:
    slot: SlotRef
    applicants: int
    winner: str | None
    winner_position: int | None
    yours: bool = False


@dataclass
class Results:
    parties: list[PartyRow]
    slots: list[SlotRow]
    log: list[str]


def results(round_: LotteryRound, yours: set[str]) -> Results | None:
    """The tables of a published round, from its publication (what anyone can verify), or None before."""
    publication = round_.publication
    if not is_published(round_) or not publication:
        return None
    rooms = {rr.room_id: rr.room for rr in round_.rooms}
    manifest = publication.get("manifest") or {}
    result = publication.get("result") or {}
    entries = {row["party"]: row for row in manifest.get("parties", [])}
    positions = {party: n for n, party in enumerate(result.get("order", []), start=1)}
    wins: dict[str, list[tuple[int, list[SlotRef]]]] = {}
    winner_of: dict[str, str] = {}
    for win in result.get("wins", []):
        wins.setdefault(win["party"], []).append((win["rank"], [slot_ref(s, rooms) for s in win["slots"]]))
        for sid in win["slots"]:
            winner_of[sid] = win["party"]
    parties = [PartyRow(position=positions[p], pseudonym=p, tier=entries.get(p, {}).get("tier", 0),
                        choices=len(entries.get(p, {}).get("choices", [])),
                        wins=sorted(wins.get(p, [])), yours=p in yours)
               for p in result.get("order", [])]
    applicants: dict[str, set[str]] = {}
    for row in manifest.get("parties", []):
        for choice in row["choices"]:
            for sid in choice["slots"]:
                applicants.setdefault(sid, set()).add(row["party"])
    slots = []
    for sid, who in applicants.items():
        winner = winner_of.get(sid)
        slots.append(SlotRow(slot=slot_ref(sid, rooms), applicants=len(who), winner=winner,
                             winner_position=positions.get(winner) if winner else None,
                             yours=bool(who & yours)))
    slots.sort(key=lambda r: r.slot.sort_key())
    return Results(parties=parties, slots=slots, log=list(publication.get("log") or []))


# --- the signed-in resident's own parties and applications ------------------------------------------------


def _acting_group_ids(user: User, now: datetime) -> list[int]:
    return [g.id for g in acting_groups(user, business_date(now))]


def own_parties(round_: LotteryRound, user: User, now: datetime) -> list[LotteryParty]:
    """The user's parties in the round: as themselves, and the groups they act for (or filed for)."""
    clause = LotteryParty.user_id == user.id
    group_ids = _acting_group_ids(user, now)
    if group_ids:
        clause = or_(clause, LotteryParty.group_id.in_(group_ids))
    return list(db.session.scalars(select(LotteryParty).where(LotteryParty.round_id == round_.id, clause)
                                   .order_by(LotteryParty.group_id.is_not(None), LotteryParty.id)))


def may_handle(application: LotteryApplication, user: User, now: datetime) -> bool:
    """The application is the user's own, or their group's: anyone else is told it does not exist."""
    party = application.party
    if party.user_id == user.id:
        return True
    return party.group_id is not None and party.group_id in _acting_group_ids(user, now)


@dataclass
class Status:
    kind: str  # css class: filed | waiting | won | paid | lost | skipped | cancelled | unavailable
    text: str
    to_pay: list[Booking] = field(default_factory=list)


def _won(application: LotteryApplication, now: datetime) -> Status:
    bookings = win_bookings(application)
    if bookings and all(b.state in (BookingState.CONFIRMED, BookingState.COMPLETED) for b in bookings):
        return Status("paid", _("Won: booked"))
    if any(is_pending(b) for b in bookings):
        return Status("won", _("Won: the exemption is waiting for the facility's decision; nothing is due until then"))
    to_pay = [b for b in bookings if b.state == BookingState.HELD and b.payment is not None and b.hold_is_live(now)]
    if to_pay:
        deadline = min(b.hold_expires_at for b in to_pay)
        return Status("won", _("Won: pay by %(deadline)s", deadline=moment(deadline)), to_pay)
    if bookings and not any(b.state in (BookingState.HELD, BookingState.CONFIRMED) for b in bookings):
        return Status("cancelled", _("Won, but not paid by the deadline: the win was cancelled"))
    return Status("won", _("Won"))


def status_of(application: LotteryApplication, now: datetime) -> Status:
    """What became of an application, as far as the round has made it public: no outcome before publication."""
    round_ = application.round
    if round_.state in (RoundState.DRAFT, RoundState.OPEN):
        if round_.state == RoundState.OPEN and now <= round_.apply_until:
            return Status("filed", _("Filed: you may change or withdraw it until %(until)s",
                                     until=moment(round_.apply_until)))
        return Status("waiting", _("Waiting for the draw"))
    if not is_published(round_):
        return Status("waiting", _("Waiting for the draw"))
    outcome = application.outcome
    if outcome == Outcome.WON:
        return _won(application, now)
    if outcome == Outcome.SKIPPED_BY_CAP:
        return Status("skipped", _("Not drawn: your caps for this round were reached first"))
    if outcome == Outcome.UNAVAILABLE:
        return Status("unavailable", _("Won, but the slot could not be let"))
    if outcome == Outcome.CANCELLED:
        return Status("cancelled", _("Win cancelled by the facility: %(reason)s", reason=application.outcome_reason))
    position = application.party.position
    if position:
        return Status("lost", _("Not won: your position in the draw was %(position)d", position=position))
    return Status("lost", _("Not won"))


@dataclass
class ApplicationRow:
    application: LotteryApplication
    status: Status
    editable: bool
    ranks: list[int]


@dataclass
class RoundApplications:
    round: LotteryRound
    rows: list[ApplicationRow]


def party_label(party: LotteryParty) -> str:
    return _("For %(group)s", group=party.group.name) if party.group is not None else _("As yourself")


def applications_for(user: User) -> list[RoundApplications]:
    """My bookings' lottery section: the user's applications (and their groups'), by round, newest first."""
    if not getattr(user, "is_authenticated", False):
        return []
    now = now_utc()
    grouped: dict[int, RoundApplications] = {}
    for application in applications_of(user, now):
        round_ = application.round
        entry = grouped.setdefault(round_.id, RoundApplications(round_, []))
        party = application.party
        editable = accepting(round_, party.tier, now)
        entry.rows.append(ApplicationRow(application, status_of(application, now), editable,
                                         list(range(1, round_.max_applications + 1)) if editable else []))
    return list(grouped.values())


def choices_left(round_: LotteryRound, party: LotteryParty | None) -> int:
    used = len(live_applications(party)) if party is not None else 0
    return max(round_.max_applications - used, 0)
