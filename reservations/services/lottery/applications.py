"""Lottery applications: a party's ranked choices in a round, filed, changed or withdrawn until the close.

A party is a person as themselves or one group they may act for (services/groups.py): one LotteryParty row
per round, one key in the draw, however many applications. An application is one ranked choice, a bundle of
slots on one day (a hall and its 控室, or two consecutive divisions), won whole or not at all. The caps:
at most `max_applications` live choices (K), at most `max_koma_per_choice` divisions in one, and never the
same person for the same slot under two parties (as themselves and for a group). Wins, koma in total and
weekday/holiday wins are capped by the draw itself (the round's caps are in the manifest).
"""
import secrets
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ...backoffice import in_scope
from ...extensions import db
from ...models import (
    ExemptionKind,
    Group,
    LotteryApplication,
    LotteryApplicationSlot,
    LotteryParty,
    LotteryRound,
    Room,
    User,
    record,
)
from ...timeutil import business_date
from ..exemptions import eligible_kinds
from ..groups import lottery_tier, may_act_for
from ..rules import closure_reason, division_slot, is_holiday
from .rounds import RoundError, accepting, live_applications

APPLICATION = "lottery_application"


@dataclass(frozen=True)
class Part:
    """One room's divisions in a bundle, as the form gives them."""

    room_id: int
    codes: tuple[str, ...]


def party_ref(user: User, group: Group | None) -> str:
    return f"group:{group.id}" if group is not None else f"user:{user.id}"


def find_party(round_: LotteryRound, user: User, group: Group | None) -> LotteryParty | None:
    return db.session.scalar(select(LotteryParty).where(LotteryParty.round_id == round_.id,
                                                        LotteryParty.ref == party_ref(user, group)))


def _party(round_: LotteryRound, user: User, group: Group | None) -> LotteryParty:
    party = find_party(round_, user, group)
    if party is None:
        party = LotteryParty(round_id=round_.id, ref=party_ref(user, group), pseudonym=secrets.token_hex(8),
                             user_id=user.id, group_id=group.id if group is not None else None,
                             tier=lottery_tier(group))
        try:
            with db.session.begin_nested():
                db.session.add(party)
                db.session.flush()
        except IntegrityError:  # the same party, filed a moment ago in another request
            party = find_party(round_, user, group)
    return party


def _check_who(round_: LotteryRound, user: User, group: Group | None, actor: User, now: datetime) -> int:
    at_counter = actor.id != user.id and actor.is_staff and all(
        in_scope(actor, rr.room.building_id) for rr in round_.rooms)
    if actor.id != user.id and not at_counter:
        raise RoundError("staff_only")
    if user.email_verified_at is None and not at_counter:
        raise RoundError("email_unverified")
    if group is not None and not may_act_for(user, group, business_date(now)):
        raise RoundError("not_group_member")
    tier = lottery_tier(group)
    if not accepting(round_, tier, now):
        raise RoundError("lottery_not_accepting")
    return tier


def _slots(round_: LotteryRound, day: date, parts: list[Part]) -> list[LotteryApplicationSlot]:
    if not parts:
        raise RoundError("lottery_empty_choice")
    if day.replace(day=1) != round_.target_month:
        raise RoundError("lottery_wrong_month")
    if len({p.room_id for p in parts}) != len(parts):
        raise RoundError("lottery_room_twice")
    rows = []
    for part in parts:
        if part.room_id not in round_.room_ids:
            raise RoundError("lottery_wrong_room")
        room = db.session.get(Room, part.room_id)
        if closure_reason(room, day):
            raise RoundError("closed")
        slot = division_slot(room, day, list(part.codes))
        rows.append(LotteryApplicationSlot(room_id=room.id, day=day, division_codes=",".join(slot.division_codes),
                                           start_at=slot.start_at, end_at=slot.end_at))
    return rows


def _slot_ids(rows: list[LotteryApplicationSlot]) -> set[str]:
    return {sid for row in rows for sid in row.slot_ids()}


def _same_person_elsewhere(round_: LotteryRound, user: User, party_id: int | None, ids: set[str]) -> bool:
    """The person already applied for one of these slots under another party (as themselves or for a group)."""
    others = db.session.scalars(select(LotteryApplication).join(LotteryParty).where(
        LotteryApplication.round_id == round_.id, LotteryApplication.withdrawn_at.is_(None),
        LotteryParty.user_id == user.id, LotteryParty.id != (party_id or 0))).all()
    return any(ids & _slot_ids(a.slots) for a in others)


def apply(round_: LotteryRound, user: User, *, day: date, parts: list[Part], rank: int | None = None,
          group: Group | None = None, exemption_kind: ExemptionKind | None = None, exemption_note: str = "",
          actor: User | None = None, now: datetime) -> LotteryApplication:
    """File one ranked choice for `user` (as themselves, or for `group`); staff at the counter pass `actor`.

    `rank` None takes the next free rank. Refused (RoundError, nothing stored) outside the tier's window,
    over a cap, for a slot the same person already asked for under another party, or for a bad bundle."""
    actor = actor or user
    _check_who(round_, user, group, actor, now)
    rows = _slots(round_, day, parts)
    koma = sum(len(row.divisions) for row in rows)
    if koma > round_.max_koma_per_choice:
        raise RoundError("lottery_too_many_koma", limit=round_.max_koma_per_choice)
    if exemption_kind is not None and exemption_kind not in eligible_kinds(group):
        raise RoundError("exemption_not_eligible")
    party = find_party(round_, user, group)
    ids = _slot_ids(rows)
    if _same_person_elsewhere(round_, user, party.id if party else None, ids):
        raise RoundError("lottery_one_party_per_slot")
    party = party or _party(round_, user, group)
    db.session.refresh(party)
    live = live_applications(party)
    if len(live) >= round_.max_applications:
        raise RoundError("lottery_too_many_applications", limit=round_.max_applications)
    if any(_slot_ids(a.slots) == ids for a in live):
        raise RoundError("lottery_duplicate_choice")
    used = {a.rank for a in live}
    rank = rank or next(r for r in range(1, round_.max_applications + 1) if r not in used)
    if not 1 <= rank <= round_.max_applications or rank in used:
        raise RoundError("lottery_rank_taken")
    application = LotteryApplication(round_id=round_.id, party_id=party.id, rank=rank, koma=koma,
                                     holiday=is_holiday(day), exemption_kind_id=exemption_kind.id if exemption_kind
                                     else None, exemption_note=exemption_note.strip(),
                                     channel="counter" if actor.id != user.id else "online", filed_by_id=actor.id,
                                     created_at=now, updated_at=now)
    application.slots = rows
    try:
        with db.session.begin_nested():
            db.session.add(application)
            db.session.flush()
    except IntegrityError as exc:  # the same rank, filed a moment ago in another request
        raise RoundError("lottery_rank_taken") from exc
    record(APPLICATION, application.id, "filed", actor_id=actor.id, round=round_.key, party=party.ref, rank=rank,
           slots=sorted(ids), channel=application.channel)
    return application


def _editable(application: LotteryApplication, actor: User, now: datetime) -> None:
    party = application.party
    if application.withdrawn_at is not None:
        raise RoundError("lottery_withdrawn")
    # A group's choice is the group's: anyone who may act for it changes it, not only the member who filed it.
    user = party.user
    if party.group is not None and actor.id != user.id and may_act_for(actor, party.group, business_date(now)):
        user = actor
    _check_who(application.round, user, party.group, actor, now)


def change_rank(application: LotteryApplication, rank: int, *, actor: User, now: datetime) -> None:
    """Move a choice to another rank; a choice already there swaps to this one's old rank."""
    _editable(application, actor, now)
    round_ = application.round
    if not 1 <= rank <= round_.max_applications:
        raise RoundError("lottery_rank_taken")
    if rank == application.rank:
        return
    other = next((a for a in live_applications(application.party) if a.rank == rank), None)
    old = application.rank
    with db.session.begin_nested():
        if other is not None:
            other.rank = 10_000 + other.id  # out of the way of the unique rank index for a moment
            db.session.flush()
        application.rank, application.updated_at = rank, now
        db.session.flush()
        if other is not None:
            other.rank, other.updated_at = old, now
            db.session.flush()
    record(APPLICATION, application.id, "rank changed", actor_id=actor.id, rank=rank, was=old,
           swapped_with=other.id if other is not None else None)


def withdraw(application: LotteryApplication, *, actor: User, now: datetime) -> None:
    _editable(application, actor, now)
    application.withdrawn_at = application.updated_at = now
    record(APPLICATION, application.id, "withdrawn", actor_id=actor.id)


def applications_of(user: User, now: datetime) -> list[LotteryApplication]:
    """What My bookings lists: the user's own applications and those filed for the groups they act for,
    live ones and results, newest round first."""
    from ..groups import acting_groups

    group_ids = [g.id for g in acting_groups(user, business_date(now))]
    clause = LotteryParty.user_id == user.id
    if group_ids:
        clause = clause | LotteryParty.group_id.in_(group_ids)
    return list(db.session.scalars(
        select(LotteryApplication).join(LotteryParty).join(LotteryRound, LotteryRound.id == LotteryApplication.round_id)
        .where(clause, LotteryApplication.withdrawn_at.is_(None))
        .order_by(LotteryRound.target_month.desc(), LotteryRound.id, LotteryParty.id, LotteryApplication.rank)))


def application_counts(round_: LotteryRound) -> dict[str, int]:
    """Live applications and parties of a round (for the staff and the round page)."""
    applications = db.session.scalar(select(func.count(LotteryApplication.id)).where(
        LotteryApplication.round_id == round_.id, LotteryApplication.withdrawn_at.is_(None)))
    parties = db.session.scalar(select(func.count(func.distinct(LotteryApplication.party_id))).where(
        LotteryApplication.round_id == round_.id, LotteryApplication.withdrawn_at.is_(None)))
    return {"applications": applications or 0, "parties": parties or 0}
