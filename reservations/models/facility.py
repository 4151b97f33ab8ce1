import enum
from datetime import date, time
from decimal import Decimal

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Numeric, String, Text, Time, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db


class RoomKind(enum.StrEnum):
    HALL = "hall"
    MUSIC_ROOM = "music_room"
    MEETING_ROOM = "meeting_room"
    JAPANESE_ROOM = "japanese_room"
    GYM = "gym"
    COURT = "court"
    KITCHEN = "kitchen"
    STUDIO = "studio"
    OTHER = "other"


class Letting(enum.StrEnum):
    """How a room's time is let: in fixed divisions (区分) or by the hour."""

    DIVISION = "division"
    HOURLY = "hourly"


class PaymentMode(enum.StrEnum):
    """When a booking of the room is paid: at once (a short hold), or by a deadline before the day of use."""

    NOW = "now"  # held for the hold time (HOLD_MINUTES, or the room's own), paid at once
    DEADLINE = "deadline"  # reserved at once, paid online until `deadline_days_before` days before, at `deadline_time`


class RefundUnit(enum.StrEnum):
    """How a refund tier's cut-off is counted back from the day of use (使用日), in calendar terms."""

    DAYS = "days"  # 使用日の7日前まで
    MONTHS = "months"  # 使用日の1か月前まで: the same day number, clamped to the month's end


class Building(db.Model):
    __tablename__ = "buildings"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stable key of the source catalog (municipality + building name), for idempotent imports.
    external_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    name_kana: Mapped[str] = mapped_column(String(200), default="")
    name_en: Mapped[str] = mapped_column(String(200), default="")
    address: Mapped[str] = mapped_column(String(300), default="")
    website_url: Mapped[str] = mapped_column(String(500), default="")
    # The revenue account (歳入科目, 款項目節) its fees are booked under; empty: by room kind (config REVENUE_ACCOUNTS).
    revenue_account: Mapped[str | None] = mapped_column(String(32))

    rooms: Mapped[list["Room"]] = relationship(back_populates="building", order_by="Room.id")


class Room(db.Model):
    __tablename__ = "rooms"
    __table_args__ = (
        CheckConstraint("letting IN ('division','hourly')", name="letting"),
        CheckConstraint("capacity IS NULL OR capacity > 0", name="capacity_positive"),
        CheckConstraint("nonresident_multiplier_pct >= 100", name="multiplier"),
        CheckConstraint("weekday_hourly_fee IS NULL OR weekday_hourly_fee >= 0", name="weekday_hourly_fee"),
        CheckConstraint("holiday_hourly_fee IS NULL OR holiday_hourly_fee >= 0", name="holiday_hourly_fee"),
        CheckConstraint("window_months >= 0 AND window_open_day BETWEEN 1 AND 28", name="window"),
        CheckConstraint("close_hours_before >= 0", name="close_hours_before"),
        CheckConstraint("payment_mode IN ('now','deadline')", name="payment_mode"),
        CheckConstraint("deadline_days_before >= 0", name="deadline_days_before"),
        CheckConstraint("reminder_days_before >= 0", name="reminder_days_before"),
        CheckConstraint("hold_minutes IS NULL OR hold_minutes BETWEEN 1 AND 120", name="hold_minutes"),
        CheckConstraint("max_active_per_user IS NULL OR max_active_per_user >= 1", name="max_active_per_user"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    building_id: Mapped[int] = mapped_column(ForeignKey("buildings.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    name_kana: Mapped[str] = mapped_column(String(200), default="")
    name_en: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(32), default=RoomKind.OTHER)
    capacity: Mapped[int | None]
    area_m2: Mapped[Decimal | None] = mapped_column(Numeric(8, 2))
    accessibility_notes: Mapped[str] = mapped_column(Text, default="")
    website_url: Mapped[str] = mapped_column(String(500), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    lottery_note: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The secret in the room's iCal feed address (services/feeds.py); None until staff make one.
    feed_token: Mapped[str | None] = mapped_column(String(64), index=True, unique=True)

    letting: Mapped[str] = mapped_column(String(16), default=Letting.DIVISION)
    # Let by the hour: opening hours, durations and the rate per unit of time.
    open_time: Mapped[time | None] = mapped_column(Time)
    close_time: Mapped[time | None] = mapped_column(Time)
    min_minutes: Mapped[int | None]
    max_minutes: Mapped[int | None]
    step_minutes: Mapped[int] = mapped_column(default=60)
    hourly_unit_minutes: Mapped[int] = mapped_column(default=60)
    weekday_hourly_fee: Mapped[int | None]
    holiday_hourly_fee: Mapped[int | None]

    # Fees for 区外 users are multiplied by this percentage (150 = 1.5×).
    nonresident_multiplier_pct: Mapped[int] = mapped_column(default=150)

    # Booking window: opens `window_months` ahead on `window_open_day` at
    # `window_open_time`, closes `close_hours_before` hours before the start.
    window_months: Mapped[int] = mapped_column(default=2)
    window_open_day: Mapped[int] = mapped_column(default=1)
    window_open_time: Mapped[time] = mapped_column(Time, default=time(9, 0))
    close_hours_before: Mapped[int] = mapped_column(default=24)
    closes_year_end: Mapped[bool] = mapped_column(Boolean, default=True)
    # Paying (section "reserve now, pay by a deadline"): see PaymentMode and services/deadline.py.
    payment_mode: Mapped[str] = mapped_column(String(16), default=PaymentMode.NOW, server_default="now")
    deadline_days_before: Mapped[int] = mapped_column(default=3, server_default="3")
    deadline_time: Mapped[time] = mapped_column(Time, default=time(23, 59), server_default="23:59:00")
    # The first reminder goes this many days before the deadline; the second on the deadline's day.
    reminder_days_before: Mapped[int] = mapped_column(default=2, server_default="2")
    # The room's own hold time for "pay now", and its own cap of a user's active bookings in it;
    # None means the ward-wide setting (HOLD_MINUTES, MAX_ACTIVE_BOOKINGS).
    hold_minutes: Mapped[int | None]
    max_active_per_user: Mapped[int | None]
    # Why the catalog import could not take this room as it is (a flaw in its record); the
    # room is not offered online until staff fix it and clear this, or a clean re-import does.
    import_issue: Mapped[str | None] = mapped_column(Text)

    building: Mapped[Building] = relationship(back_populates="rooms")
    divisions: Mapped[list["Division"]] = relationship(
        back_populates="room", order_by="Division.position", cascade="all, delete-orphan"
    )
    equipment: Mapped[list["RoomEquipment"]] = relationship(cascade="all, delete-orphan")
    closures: Mapped[list["Closure"]] = relationship(cascade="all, delete-orphan")
    # The room's own refund policy; when it has none, its kind's tiers apply (services.refund_policy).
    refund_tiers: Mapped[list["RefundTier"]] = relationship(
        cascade="all, delete-orphan", order_by="RefundTier.id"
    )
    # Read only: the room's own tiers and its kind's together, so a page can load whichever applies with the
    # room in one statement (joinedload) instead of asking for the kind's after finding the room has none.
    policy_tiers: Mapped[list["RefundTier"]] = relationship(
        primaryjoin="or_(foreign(RefundTier.room_id) == Room.id, foreign(RefundTier.room_kind) == Room.kind)",
        viewonly=True, order_by="RefundTier.id",
    )

    def display_name(self, locale: str = "ja") -> str:
        return (self.name_en or self.name) if locale == "en" else self.name

    def unbookable_reason(self) -> str | None:
        """Why the room is not offered online, or None when it is."""
        if not self.active:
            return "inactive"
        if self.import_issue:
            return f"catalog flaw: {self.import_issue}"
        if self.letting == Letting.DIVISION:
            if not self.divisions:
                return "no divisions"
            if any(d.weekday_fee is None or d.holiday_fee is None for d in self.divisions):
                return "no fees"
        else:
            if self.weekday_hourly_fee is None or self.holiday_hourly_fee is None:
                return "no fees"
            if self.open_time is None or self.close_time is None:
                return "no opening hours"
        return None

    @property
    def bookable_online(self) -> bool:
        return self.unbookable_reason() is None

    def equipment_codes(self) -> set[str]:
        return {e.code for e in self.equipment}


class RefundTier(db.Model):
    """One tier of a refund policy, as ward rules word it: cancelled by the end of the day (Tokyo)
    that lies `count` days or months before the day of use, `percent` of the fee is refunded.

    A tier belongs to a room kind (the default for every room of that kind) or to one room
    (whose own tiers then replace its kind's). A room with one tier of 0 % refunds nothing.
    """

    __tablename__ = "refund_tiers"
    __table_args__ = (
        CheckConstraint("unit IN ('days','months')", name="unit"),
        CheckConstraint("count >= 0", name="count"),
        CheckConstraint("percent BETWEEN 0 AND 100", name="percent"),
        CheckConstraint("(room_kind IS NULL) <> (room_id IS NULL)", name="owner"),
        UniqueConstraint("room_kind", "unit", "count", name="uq_refund_tiers_kind_unit_count"),
        UniqueConstraint("room_id", "unit", "count", name="uq_refund_tiers_room_unit_count"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    room_kind: Mapped[str | None] = mapped_column(String(32))
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"))
    unit: Mapped[str] = mapped_column(String(8), default=RefundUnit.DAYS)
    count: Mapped[int]
    percent: Mapped[int]


class Division(db.Model):
    """A fixed time division (区分) of a room, e.g. MORNING 09:00–12:00."""

    __tablename__ = "divisions"
    __table_args__ = (
        UniqueConstraint("room_id", "code", name="uq_divisions_room_code"),
        CheckConstraint("end_time > start_time", name="order"),
        CheckConstraint("weekday_fee IS NULL OR weekday_fee >= 0", name="weekday_fee"),
        CheckConstraint("holiday_fee IS NULL OR holiday_fee >= 0", name="holiday_fee"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    position: Mapped[int]
    start_time: Mapped[time] = mapped_column(Time)
    end_time: Mapped[time] = mapped_column(Time)
    weekday_fee: Mapped[int | None]
    holiday_fee: Mapped[int | None]

    room: Mapped[Room] = relationship(back_populates="divisions")


class RoomEquipment(db.Model):
    """Equipment a room has or a use it allows (piano, brass, ...), with its status."""

    __tablename__ = "room_equipment"

    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True)
    code: Mapped[str] = mapped_column(String(32), primary_key=True)


class ClosureKind(enum.StrEnum):
    MONTHLY = "monthly"  # the nth <weekday> of every month, e.g. 2nd Monday
    WEEKLY = "weekly"  # every <weekday>
    PERIOD = "period"  # one-off maintenance, start_date..end_date inclusive


class Closure(db.Model):
    __tablename__ = "closures"
    __table_args__ = (
        CheckConstraint("kind IN ('monthly','weekly','period')", name="kind"),
        CheckConstraint("weekday IS NULL OR weekday BETWEEN 0 AND 6", name="weekday"),
        CheckConstraint("nth IS NULL OR nth BETWEEN 1 AND 5", name="nth"),
        CheckConstraint("end_date IS NULL OR start_date IS NULL OR end_date >= start_date", name="period"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    weekday: Mapped[int | None]  # Monday = 0
    nth: Mapped[int | None]
    start_date: Mapped[date | None]
    end_date: Mapped[date | None]
    reason: Mapped[str] = mapped_column(String(200), default="")

