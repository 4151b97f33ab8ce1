"""What the operators' side keeps: one row per scheduled job run."""
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..timeutil import now_utc
from .types import UTCDateTime


class JobRun(db.Model):
    """A run of a periodic job. A scheduled run claims its tick (the job's interval number since the epoch)
    before it starts: with several schedulers against one database, the unique (job, tick) lets exactly one of
    them run each job once per tick, and the others skip it. A run by hand (`flask jobs once`) has no tick."""
    __tablename__ = "job_runs"
    __table_args__ = (
        Index("uq_job_runs_job_tick", "job_id", "tick", unique=True),
        Index("ix_job_runs_started_at", "started_at"),
        CheckConstraint("outcome IN ('running', 'ok', 'failed')", name="outcome"),
        CheckConstraint("seconds IS NULL OR seconds >= 0", name="seconds"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64))
    tick: Mapped[int | None] = mapped_column(BigInteger)
    host: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    seconds: Mapped[float | None]
    outcome: Mapped[str] = mapped_column(String(16), default="running")
    result: Mapped[str] = mapped_column(Text, default="")


class CatalogVersion(db.Model):
    """One row whose token changes, by trigger, with every write to the tables a room's booking rules are read
    from (rooms, buildings, divisions, closures, refund_tiers): a process may keep a room it read with those
    rules for as long as the token is the one it read before it (services/rules.py, cached_room_with_rules).
    The database writes it, whoever changes the catalog (the app, the importer, a person at psql); no row yet
    (an empty database) means "keep nothing"."""
    __tablename__ = "catalog_version"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    token: Mapped[str] = mapped_column(String(40))
