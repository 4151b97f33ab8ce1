"""Registered groups (登録団体) and exemptions (減免).

A group is applied for online by its representative, reviewed by staff, valid for a year and renewed;
a member books or applies to the lottery for it, at the group's fee class and lottery tier
(services/groups.py). An exemption kind is a reduction the ward's ordinance allows (a rate and its legal
ground); an Exemption is one use of it on one booking, approved by staff when the kind says so
(services/exemptions.py).
"""
import enum
from datetime import date, datetime

from sqlalchemy import JSON, Boolean, CheckConstraint, Date, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..timeutil import now_utc
from .types import UTCDateTime
from .user import User


class GroupStatus(enum.StrEnum):
    PENDING = "pending"  # applied for (or renewing after expiry), waiting for staff
    ACTIVE = "active"
    REJECTED = "rejected"  # with a reason
    SUSPENDED = "suspended"  # by staff, with a reason
    EXPIRED = "expired"  # valid_until passed without a renewal


# The states in which a group counts: for "a person represents at most one group", for the
# membership cap and for the duplicate-member check.
LIVE_GROUP_STATES = (GroupStatus.PENDING, GroupStatus.ACTIVE)


class GroupCategory(enum.StrEnum):
    """What kind of body the group is: it decides which exemptions it may use."""

    GENERAL = "general"  # 一般団体
    WELFARE = "welfare"  # 福祉団体
    SCHOOL = "school"  # 学校
    WARD = "ward"  # 区 (the ward's own departments)


_LIVE = "status IN ('pending','active')"


class Group(db.Model):
    __tablename__ = "groups"
    __table_args__ = (
        CheckConstraint("status IN ('pending','active','rejected','suspended','expired')", name="status"),
        CheckConstraint("category IN ('general','welfare','school','ward')", name="category"),
        CheckConstraint("member_count >= 1 AND resident_count BETWEEN 0 AND member_count", name="members"),
        CheckConstraint("status <> 'rejected' OR reason <> ''", name="rejected_has_reason"),
        CheckConstraint("status <> 'suspended' OR reason <> ''", name="suspended_has_reason"),
        CheckConstraint("status <> 'active' OR valid_until IS NOT NULL", name="active_has_validity"),
        # A person represents at most one group that counts (pending or active).
        Index("uq_groups_live_representative", "representative_id", unique=True,
              sqlite_where=text(_LIVE), postgresql_where=text(_LIVE)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    name_kana: Mapped[str] = mapped_column(String(200), default="")
    representative_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    contact_name: Mapped[str] = mapped_column(String(100), default="")
    contact_email: Mapped[str] = mapped_column(String(254), default="")
    contact_phone: Mapped[str] = mapped_column(String(32), default="")
    category: Mapped[str] = mapped_column(String(16), default=GroupCategory.GENERAL)
    purpose: Mapped[str] = mapped_column(Text, default="")
    activity_kind: Mapped[str] = mapped_column(String(100), default="")
    # The counts as declared; the listed members (GroupMember) back them up.
    member_count: Mapped[int]
    resident_count: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default=GroupStatus.PENDING)
    valid_until: Mapped[date | None] = mapped_column(Date)
    # A rejection's or suspension's reason, shown to the representative.
    reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    # What the checks found at application (duplicate members, a membership over the cap): shown to staff.
    findings: Mapped[list] = mapped_column(JSON, default=list)
    renewal_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reminded_for: Mapped[date | None] = mapped_column(Date)  # the valid_until its renewal reminder was mailed for
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    representative: Mapped[User] = relationship(foreign_keys=[representative_id])
    reviewed_by: Mapped[User | None] = relationship(foreign_keys=[reviewed_by_id])
    members: Mapped[list["GroupMember"]] = relationship(
        back_populates="group", cascade="all, delete-orphan", order_by="GroupMember.id")


class GroupMember(db.Model):
    """A listed member. `identity` is name + kana + phone normalised (services/groups.identity_key): what
    the duplicate check and the membership cap compare across groups."""

    __tablename__ = "group_members"
    __table_args__ = (
        CheckConstraint("residency IN ('resident','worker','student','outside')", name="residency"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    name_kana: Mapped[str] = mapped_column(String(100), default="")
    phone: Mapped[str] = mapped_column(String(32), default="")
    residency: Mapped[str] = mapped_column(String(16), default="resident")
    identity: Mapped[str] = mapped_column(String(300), index=True)
    # A member with an account may book and apply for the group (the representative always may).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)

    group: Mapped[Group] = relationship(back_populates="members")
    user: Mapped[User | None] = relationship()


class ExemptionKind(db.Model):
    """A reduction the ordinance allows: e.g. WARD 100 % (条例第10条第1号), WELFARE 50 %."""

    __tablename__ = "exemption_kinds"
    __table_args__ = (
        CheckConstraint("rate_pct BETWEEN 1 AND 100", name="rate_pct"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name_ja: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200), default="")
    rate_pct: Mapped[int]
    legal_ground: Mapped[str] = mapped_column(String(300))
    # Group categories that may use it, comma-separated (GroupCategory); "individual": a person as themselves.
    eligible: Mapped[str] = mapped_column(String(200), default="")
    needs_approval: Mapped[bool] = mapped_column(Boolean, default=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    @property
    def eligible_list(self) -> list[str]:
        return [e for e in self.eligible.split(",") if e]

    def display_name(self, locale: str = "ja") -> str:
        return (self.name_en or self.name_ja) if locale == "en" else self.name_ja


class ExemptionState(enum.StrEnum):
    PENDING = "pending"  # waiting for staff; the booking is held, not charged
    APPLIED = "applied"  # in force: reduced at once (no approval needed), or approved
    REFUSED = "refused"  # staff said no: the full fee is due by the payment deadline


class Exemption(db.Model):
    """One use of an exemption kind on one booking: the full fee, the reduction and what is due.

    full_fee − reduction is the booking's price while the exemption is in force; on refusal the booking's
    price is the full fee again. The receipt, the ledger view, the exports and the 日計表 read it from here.
    """

    __tablename__ = "exemptions"
    __table_args__ = (
        CheckConstraint("state IN ('pending','applied','refused')", name="state"),
        CheckConstraint("rate_pct BETWEEN 1 AND 100", name="rate_pct"),
        CheckConstraint("full_fee >= 0 AND reduction BETWEEN 0 AND full_fee", name="amounts"),
        CheckConstraint("state = 'pending' OR decided_at IS NOT NULL", name="decided"),
        CheckConstraint("state <> 'refused' OR reason <> ''", name="refused_has_reason"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id", ondelete="CASCADE"), unique=True)
    kind_id: Mapped[int] = mapped_column(ForeignKey("exemption_kinds.id"), index=True)
    code: Mapped[str] = mapped_column(String(32))  # the kind's code when applied, as printed
    rate_pct: Mapped[int]
    legal_ground: Mapped[str] = mapped_column(String(300))
    full_fee: Mapped[int]
    reduction: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), default=ExemptionState.PENDING)
    decide_by: Mapped[datetime | None] = mapped_column(UTCDateTime)
    applicant_note: Mapped[str] = mapped_column(Text, default="", server_default="")
    reason: Mapped[str] = mapped_column(Text, default="", server_default="")  # staff's, on a decision
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    kind: Mapped[ExemptionKind] = relationship()
    booking: Mapped["Booking"] = relationship(back_populates="exemption")  # noqa: F821 (models/booking.py)
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])

    @property
    def amount_due(self) -> int:
        return self.full_fee if self.state == ExemptionState.REFUSED else self.full_fee - self.reduction
