import enum
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import CheckConstraint, Column, ForeignKey, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..passwords import hash_password, verify_password
from ..timeutil import now_utc
from .types import UTCDateTime


class Residency(enum.StrEnum):
    """Residency class (区内在住 / 在勤 / 在学 / 区外); it sets the fee multiplier."""

    RESIDENT = "resident"  # 区内在住
    WORKER = "worker"  # 区内在勤
    STUDENT = "student"  # 区内在学
    OUTSIDE = "outside"  # 区外


class Role(enum.StrEnum):
    RESIDENT = "resident"
    STAFF = "staff"
    FINANCE = "finance"
    ADMIN = "admin"


# The buildings a staff member runs: their scope. Staff see and change only these; admin and finance
# are not scoped (admin sees everything, finance reconciles the whole ward).
staff_buildings = Table(
    "staff_buildings",
    db.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("building_id", ForeignKey("buildings.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("residency IN ('resident','worker','student','outside')", name="residency"),
        CheckConstraint("role IN ('resident','staff','finance','admin')", name="role"),
        # Addresses are stored lowercased (services.accounts.normalise_email), so the
        # unique index on email serves look-ups without lower().
        CheckConstraint("email = lower(email)", name="email_lowercase"),
        CheckConstraint("session_version >= 1", name="session_version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(256))
    residency: Mapped[str] = mapped_column(String(16), default=Residency.RESIDENT)
    role: Mapped[str] = mapped_column(String(16), default=Role.RESIDENT)
    name_kana: Mapped[str] = mapped_column(String(100), default="", server_default="")
    phone: Mapped[str | None] = mapped_column(String(32))
    # A walk-in (窓口の来訪者) that staff booked for by name, kana and phone: no password that can match,
    # no log-in, and an address under the reserved .invalid domain that no mail goes to (services/counter.py).
    walk_in: Mapped[bool] = mapped_column(default=False, server_default="0")
    locale: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    # Set when the owner followed the signed link mailed at sign-up; until then no holds.
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Part of every session's identity: bumping it (logout, password change, reset)
    # invalidates every cookie issued before.
    session_version: Mapped[int] = mapped_column(default=1, server_default="1")

    buildings: Mapped[list["Building"]] = relationship(  # noqa: F821 (models/facility.py)
        secondary=staff_buildings, order_by="Building.id")

    def get_id(self) -> str:
        # What Flask-Login keeps in the session cookie. The loader (reservations.account)
        # refuses a version that is no longer the user's, which is how cookies are revoked.
        return f"{self.id}:{self.session_version}"

    def set_password(self, password: str) -> None:
        self.password_hash = hash_password(password)

    def check_password(self, password: str) -> bool:
        return verify_password(self.password_hash, password)

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None

    @property
    def mailable(self) -> bool:
        return not self.walk_in

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.STAFF, Role.ADMIN)


class Suspension(db.Model):
    """Online booking suspended for a resident after too many no-shows (services/no_shows.py).

    Staff can lift it early, with a reason; the row stays as the record of both.
    """

    __tablename__ = "suspensions"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="period"),
        CheckConstraint("(lifted_at IS NULL) = (lifted_by_id IS NULL)", name="lifted"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The no-shows that caused it, by booking id, for the resident's page and the audit.
    booking_ids: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lifted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    lift_reason: Mapped[str] = mapped_column(Text, default="")

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    lifted_by: Mapped[User | None] = relationship(foreign_keys=[lifted_by_id])

    def in_force(self, now: datetime) -> bool:
        return self.lifted_at is None and self.starts_at <= now < self.ends_at
