"""Words the resident's lottery pages say: a round's state, a tier, what became of an application.

Registered as Jinja globals by the blueprint (reservations/lottery/__init__.py), because My bookings, a page
of the bookings blueprint, shows the lottery applications too.
"""
from datetime import datetime

from flask import current_app
from flask_babel import format_date

from ..filters import tokyo_time
from ..i18n import gettext as _
from ..models import LotteryRound, RoundState
from ..services.lottery.rounds import tier_opens_at


def moment(dt: datetime) -> str:
    """A moment as the pages print it: its Tokyo date in full and the time."""
    return f"{format_date(dt, 'full')} {tokyo_time(dt)}"


def tier_label(tier: int) -> str:
    """A tier in words: resident groups draw first, everyone else after them (config.py)."""
    config = current_app.config
    if tier == config["LOTTERY_RESIDENT_GROUP_TIER"]:
        return _("Tier %(tier)d: registered groups of residents", tier=tier)
    if tier == config["LOTTERY_OTHER_TIER"]:
        return _("Tier %(tier)d: everyone else (persons and other groups)", tier=tier)
    return _("Tier %(tier)d", tier=tier)


def tier_windows(round_: LotteryRound) -> list[tuple[int, datetime]]:
    """Each tier that may apply, and when its window opens (all close at apply_until), earliest first."""
    tiers = sorted(int(t) for t in (round_.tier_windows or {}))
    return [(tier, tier_opens_at(round_, tier)) for tier in tiers]


def is_public(round_: LotteryRound) -> bool:
    """A draft round is staff's alone; every other state has its public page."""
    return round_.state != RoundState.DRAFT


def is_published(round_: LotteryRound) -> bool:
    """Whether the secret, the results and the log are public (never before publication)."""
    return round_.state in (RoundState.PUBLISHED, RoundState.SETTLING, RoundState.RELEASED)


def round_state_text(round_: LotteryRound, now: datetime) -> str:
    state = round_.state
    if state == RoundState.OPEN:
        if now > round_.apply_until:
            return _("Applications have closed: the draw is coming.")
        if any(opens <= now for _tier, opens in tier_windows(round_)):
            return _("Taking applications until %(until)s.", until=moment(round_.apply_until))
        return _("Applications open on %(opens)s.", opens=moment(round_.apply_from))
    if state == RoundState.CLOSED:
        return _("Applications have closed: the draw is coming.")
    if state == RoundState.DRAWN:
        return _("Drawn: the results are published on %(at)s.", at=moment(round_.publish_at))
    if state == RoundState.PUBLISHED:
        return _("Results published: winners pay by their deadline (at the latest %(pay_by)s).",
                 pay_by=moment(round_.pay_by))
    if state == RoundState.SETTLING:
        return _("The payment deadline has passed: what is left opens for first-come booking on %(at)s.",
                 at=moment(round_.release_at))
    if state == RoundState.RELEASED:
        return _("Released: what is left is open for first-come booking.")
    return _("In preparation.")


def state_class(round_: LotteryRound) -> str:
    return f"round-{round_.state}"


GLOBALS = {
    "lottery_tier_label": tier_label,
    "lottery_tier_windows": tier_windows,
    "lottery_round_state": round_state_text,
    "lottery_is_published": is_published,
}
