"""The monthly lottery (抽選): a room's rule, rounds, parties and their ranked applications.

A round lets the slots of its rooms in one target month. Its life (services/lottery/rounds.py):
draft → open (applications taken in each tier's window) → closed (frozen: the manifest hashed, the secret
committed) → drawn → published (results told, wins are bookings payable by their deadline) → settling
(the pay-by date passed: unpaid wins cancelled) → released (what is left opens first-come at release_at).
Until released, the round's slots are not bookable first-come (services/rules.check_bookable).

A party is one person applying as themselves, or one group: one row per round, one key in the draw,
however many applications it files. An application is one ranked choice: a bundle of slots (e.g. a hall
and its 控室 the same afternoon) won whole or not at all.
"""
import enum
from datetime import date, datetime, time

from sqlalchemy import JSON, CheckConstraint, Date, ForeignKey, Index, String, Text, Time, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..timeutil import now_utc
from .facility import Room
from .groups import ExemptionKind, Group
from .types import UTCDateTime
from .user import User


class RoundState(enum.StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    CLOSED = "closed"
    DRAWN = "drawn"
    PUBLISHED = "published"
    SETTLING = "settling"
    RELEASED = "released"


ROUND_TRANSITIONS = {
    RoundState.DRAFT: {RoundState.OPEN},
    RoundState.OPEN: {RoundState.CLOSED},
    RoundState.CLOSED: {RoundState.DRAWN},
    RoundState.DRAWN: {RoundState.PUBLISHED},
    RoundState.PUBLISHED: {RoundState.SETTLING},
    RoundState.SETTLING: {RoundState.RELEASED},
    RoundState.RELEASED: set(),
}

_CAPS = (
    CheckConstraint("max_applications >= 1", name="max_applications"),
    CheckConstraint("max_koma_per_choice >= 1", name="max_koma_per_choice"),
    CheckConstraint("max_koma_total IS NULL OR max_koma_total >= 1", name="max_koma_total"),
    CheckConstraint("max_wins IS NULL OR max_wins >= 1", name="max_wins"),
    CheckConstraint("max_weekday_wins IS NULL OR max_weekday_wins >= 0", name="max_weekday_wins"),
    CheckConstraint("max_holiday_wins IS NULL OR max_holiday_wins >= 0", name="max_holiday_wins"),
    CheckConstraint("pay_days_before >= 0", name="pay_days_before"),
)


class CapsMixin:
    # Caps of one party in a round. max_applications is K, the ranked choices it may file (Kumamoto: 10).
    max_applications: Mapped[int] = mapped_column(default=10)
    max_koma_per_choice: Mapped[int] = mapped_column(default=3)
    max_koma_total: Mapped[int | None]  # koma a party may win in the round
    max_wins: Mapped[int | None]
    max_weekday_wins: Mapped[int | None]
    max_holiday_wins: Mapped[int | None]
    # A win is paid by the earlier of the round's pay-by and this many days before the day of use (23:59).
    pay_days_before: Mapped[int] = mapped_column(default=3)


class LotteryRule(CapsMixin, db.Model):
    """A room's standing rule: from it each month's round is made, and staff override per round.

    Days are days of the month before the target month (`months_ahead` before it): with 2, 1, 10, 11, 11,
    20, 21 the round for June applies 1–10 April, draws and publishes on 11 April, is paid by 20 April and
    releases on 21 April at release_time. `tier_months` lets a tier apply earlier: {"1": 3, "2": 2} opens
    resident groups a month before everyone else; a tier missing from it may not apply.
    """

    __tablename__ = "lottery_rules"
    __table_args__ = (
        CheckConstraint("months_ahead BETWEEN 1 AND 12", name="months_ahead"),
        CheckConstraint("apply_from_day BETWEEN 1 AND 28 AND apply_until_day BETWEEN apply_from_day AND 28"
                        " AND draw_day BETWEEN apply_until_day AND 28 AND publish_day BETWEEN draw_day AND 28"
                        " AND pay_by_day BETWEEN publish_day AND 28 AND release_day BETWEEN pay_by_day AND 28",
                        name="days"),
        *_CAPS,
    )

    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True)
    months_ahead: Mapped[int] = mapped_column(default=2)
    tier_months: Mapped[dict] = mapped_column(JSON, default=dict)
    apply_from_day: Mapped[int] = mapped_column(default=1)
    apply_until_day: Mapped[int] = mapped_column(default=10)
    draw_day: Mapped[int] = mapped_column(default=11)
    publish_day: Mapped[int] = mapped_column(default=11)
    pay_by_day: Mapped[int] = mapped_column(default=20)
    release_day: Mapped[int] = mapped_column(default=21)
    release_time: Mapped[time] = mapped_column(Time, default=time(9, 0))

    room: Mapped[Room] = relationship()


class LotteryRound(CapsMixin, db.Model):
    __tablename__ = "lottery_rounds"
    __table_args__ = (
        CheckConstraint("state IN ('draft','open','closed','drawn','published','settling','released')",
                        name="state"),
        CheckConstraint("apply_until > apply_from AND draw_at > apply_until AND publish_at >= draw_at"
                        " AND pay_by > publish_at AND release_at >= pay_by", name="windows"),
        CheckConstraint("state IN ('draft','open') OR (manifest_hash IS NOT NULL AND commitment IS NOT NULL"
                        " AND committed_at IS NOT NULL)", name="frozen"),
        CheckConstraint("state IN ('draft','open','closed') OR (result_hash IS NOT NULL"
                        " AND public_value_fixed_at > committed_at)", name="drawn"),
        *_CAPS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)  # public, e.g. "2027-06-12" (month and first room)
    title: Mapped[str] = mapped_column(String(200))
    target_month: Mapped[date] = mapped_column(Date)  # the first of the month let
    state: Mapped[str] = mapped_column(String(16), default=RoundState.DRAFT)
    # The earliest tier's opening; each tier's own is in tier_windows {"1": iso, "2": iso}
    # (a tier not there may not apply).
    apply_from: Mapped[datetime] = mapped_column(UTCDateTime)
    tier_windows: Mapped[dict] = mapped_column(JSON, default=dict)
    apply_until: Mapped[datetime] = mapped_column(UTCDateTime)  # its last instant (23:59:59.999999 JST)
    draw_at: Mapped[datetime] = mapped_column(UTCDateTime)
    publish_at: Mapped[datetime] = mapped_column(UTCDateTime)
    pay_by: Mapped[datetime] = mapped_column(UTCDateTime)
    release_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The draw (services/lottery/draw.py): fixed at the close, the public value after it, revealed at publication.
    manifest: Mapped[dict | None] = mapped_column(JSON)
    manifest_hash: Mapped[str | None] = mapped_column(String(64))
    secret: Mapped[str | None] = mapped_column(String(128))  # never shown before publication
    commitment: Mapped[str | None] = mapped_column(String(64))
    committed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    public_value: Mapped[str | None] = mapped_column(String(200))
    public_value_source: Mapped[str] = mapped_column(String(300), default="", server_default="")
    public_value_fixed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result_hash: Mapped[str | None] = mapped_column(String(64))
    publication: Mapped[dict | None] = mapped_column(JSON)  # what the round page publishes after the draw
    drawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    rooms: Mapped[list["LotteryRoundRoom"]] = relationship(
        back_populates="round", cascade="all, delete-orphan", order_by="LotteryRoundRoom.room_id")

    @property
    def room_ids(self) -> list[int]:
        return [r.room_id for r in self.rooms]


class LotteryRoundRoom(db.Model):
    """A room of a round. One room is in at most one round for a month: the database says so."""

    __tablename__ = "lottery_round_rooms"
    __table_args__ = (UniqueConstraint("room_id", "target_month", name="uq_lottery_round_rooms_room_month"),)

    round_id: Mapped[int] = mapped_column(ForeignKey("lottery_rounds.id", ondelete="CASCADE"), primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"), primary_key=True)
    target_month: Mapped[date] = mapped_column(Date)

    round: Mapped[LotteryRound] = relationship(back_populates="rooms")
    room: Mapped[Room] = relationship()


class LotteryParty(db.Model):
    """One party of a round: a person as themselves ("user:<id>") or a group ("group:<id>"), once per round.

    `pseudonym` is what the published manifest calls it (random, per round); the resident sees their own."""

    __tablename__ = "lottery_parties"
    __table_args__ = (
        UniqueConstraint("round_id", "ref", name="uq_lottery_parties_round_ref"),
        UniqueConstraint("round_id", "pseudonym", name="uq_lottery_parties_round_pseudonym"),
        CheckConstraint("(group_id IS NULL) = (ref LIKE 'user:%')", name="ref"),
        CheckConstraint("tier >= 1", name="tier"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("lottery_rounds.id", ondelete="CASCADE"), index=True)
    ref: Mapped[str] = mapped_column(String(32))
    pseudonym: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)  # the person, or the group's filer
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id"))
    tier: Mapped[int]
    position: Mapped[int | None]  # place in the draw order, from 1
    key: Mapped[str | None] = mapped_column(String(64))  # SHA-256(seed ‖ pseudonym)

    round: Mapped[LotteryRound] = relationship()
    user: Mapped[User] = relationship()
    group: Mapped[Group | None] = relationship()
    applications: Mapped[list["LotteryApplication"]] = relationship(
        back_populates="party", order_by="LotteryApplication.rank")


class Outcome(enum.StrEnum):
    WON = "won"
    LOST = "lost"  # a slot went to a party drawn earlier
    SKIPPED_BY_CAP = "skipped_by_cap"  # the party's caps were reached first
    UNAVAILABLE = "unavailable"  # won, but the slot could not be let (closed or blocked since)
    CANCELLED = "cancelled"  # a win cancelled by staff, with a reason


_ACTIVE_APPLICATION = "withdrawn_at IS NULL"


class LotteryApplication(db.Model):
    """One ranked choice of a party: a bundle of slots (LotteryApplicationSlot), won whole or not at all."""

    __tablename__ = "lottery_applications"
    __table_args__ = (
        CheckConstraint("rank >= 1", name="rank"),
        CheckConstraint("koma >= 1", name="koma"),
        CheckConstraint("outcome IS NULL OR outcome IN ('won','lost','skipped_by_cap','unavailable','cancelled')",
                        name="outcome"),
        # Two live choices of one party never share a rank.
        Index("uq_lottery_applications_live_rank", "party_id", "rank", unique=True,
              sqlite_where=text(_ACTIVE_APPLICATION), postgresql_where=text(_ACTIVE_APPLICATION)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("lottery_rounds.id", ondelete="CASCADE"), index=True)
    party_id: Mapped[int] = mapped_column(ForeignKey("lottery_parties.id", ondelete="CASCADE"), index=True)
    rank: Mapped[int]
    koma: Mapped[int]
    holiday: Mapped[bool] = mapped_column(default=False)
    exemption_kind_id: Mapped[int | None] = mapped_column(ForeignKey("exemption_kinds.id"))
    exemption_note: Mapped[str] = mapped_column(Text, default="", server_default="")
    channel: Mapped[str] = mapped_column(String(16), default="online")  # online | counter
    filed_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))  # the resident, or staff at the counter
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(16))
    outcome_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    losers_told_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a forfeited win: its slots' losers told
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, onupdate=now_utc)

    round: Mapped[LotteryRound] = relationship()
    party: Mapped[LotteryParty] = relationship(back_populates="applications")
    exemption_kind: Mapped[ExemptionKind | None] = relationship()
    slots: Mapped[list["LotteryApplicationSlot"]] = relationship(
        back_populates="application", cascade="all, delete-orphan", order_by="LotteryApplicationSlot.id")


class LotteryApplicationSlot(db.Model):
    """One room's part of a bundle: its divisions on one day; `booking_id` once won and let."""

    __tablename__ = "lottery_application_slots"
    __table_args__ = (CheckConstraint("end_at > start_at", name="range"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(
        ForeignKey("lottery_applications.id", ondelete="CASCADE"), index=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"), index=True)
    day: Mapped[date] = mapped_column(Date)
    division_codes: Mapped[str] = mapped_column(String(200))  # "AFTERNOON" or "AFTERNOON,NIGHT"
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime)
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id", ondelete="SET NULL"), index=True)

    application: Mapped[LotteryApplication] = relationship(back_populates="slots")
    room: Mapped[Room] = relationship()

    @property
    def divisions(self) -> list[str]:
        return self.division_codes.split(",")

    def slot_ids(self) -> list[str]:
        """The draw's slot ids: one per division, "<room>/<day>/<division>"."""
        return [f"{self.room_id}/{self.day.isoformat()}/{code}" for code in self.divisions]
