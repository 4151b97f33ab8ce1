"""No-shows and the suspension of online booking they lead to (the policy is in config.py: NO_SHOW_*)."""
from datetime import datetime

from sqlalchemy import select

from ..extensions import db
from ..models import Suspension, User


def suspension_in_force(user: User, now: datetime) -> Suspension | None:
    """The suspension that stops `user` booking online at `now`, if any (the latest ending one)."""
    return db.session.scalar(
        select(Suspension).where(Suspension.user_id == user.id, Suspension.lifted_at.is_(None),
                                 Suspension.starts_at <= now, Suspension.ends_at > now)
        .order_by(Suspension.ends_at.desc()).limit(1))
