"""Lottery rounds: their windows, their states, and the steps from the close to the release.

draft → open → closed → drawn → published → settling → released (models/lottery.py). Staff open a round,
fix the public value after the close, run the draw and publish it; the job (`run_lottery`) closes a round
when its application window ends, moves it to settling once its pay-by date has passed, tells the losers
of a forfeited win first, and releases it at release_at. The slots of a round are not bookable first-come
until it is released (`lottery_hides`), and not after release_at either way, so a job that did not run
never keeps them hidden.

The draw itself is services/lottery/draw.py; this module only feeds it what the database holds and turns
its result into bookings payable by a deadline (the back office's "pay by deadline" mode).
"""
import secrets
from collections import Counter
from datetime import date, datetime, time, timedelta
from functools import partial

from flask import current_app, render_template
from flask_babel import force_locale
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload, selectinload

from ...aftercommit import after_commit
from ...extensions import db
from ...i18n import gettext as _
from ...links import external_url
from ...mail import send_mail
from ...models import (
    ROUND_TRANSITIONS,
    Booking,
    BookingState,
    LotteryApplication,
    LotteryApplicationSlot,
    LotteryParty,
    LotteryRound,
    LotteryRoundRoom,
    LotteryRule,
    Outcome,
    PaymentState,
    Room,
    RoundState,
    User,
    record,
)
from ...timeutil import at_tokyo, business_date, now_utc, shift_months
from ..booking import active_clause, lock_room, overlapping, retire_lapsed_holds
from ..deadline import LAST_INSTANT_OF_THE_MINUTE, pay_url
from ..errors import BookingError
from ..exemptions import attach, is_pending
from ..groups import fee_residency
from ..pricing import quote
from ..rules import closure_reason, division_slot
from . import draw as lottery_draw

LAST_INSTANT_OF_THE_DAY = timedelta(days=1, microseconds=-1)
DEFAULT_TIER_MONTHS = {"1": 3, "2": 2}
# Audit: the round's own trail ("lottery_round", id) and each application's ("lottery_application", id).
ROUND = "lottery_round"


class RoundError(BookingError):
    """A step a round's state or clock does not allow; its code has a message in services/errors.py."""


# --- windows ------------------------------------------------------------------------------------------


def default_rule(room: Room) -> LotteryRule:
    """The room's rule, or the usual one (apply 1st–10th two months ahead, draw the 11th, pay by the 20th,
    release the 21st at 09:00; resident groups a month earlier) when staff have not set one."""
    rule = db.session.get(LotteryRule, room.id)
    if rule is None:
        rule = LotteryRule(room_id=room.id, months_ahead=2, tier_months=dict(DEFAULT_TIER_MONTHS), apply_from_day=1,
                           apply_until_day=10, draw_day=11, publish_day=11, pay_by_day=20, release_day=21,
                           release_time=time(9, 0), max_applications=10, max_koma_per_choice=3, pay_days_before=3)
    return rule


def windows_from_rule(rule: LotteryRule, target_month: date) -> dict:
    """A round's dates for `target_month` by the rule: what staff then override for that month."""
    month = target_month.replace(day=1)
    base = shift_months(month, -rule.months_ahead)
    tier_months = rule.tier_months or {"2": rule.months_ahead}
    tier_windows = {tier: at_tokyo(shift_months(month, -int(months)).replace(day=rule.apply_from_day), time(0))
                    for tier, months in sorted(tier_months.items())}
    return {
        "tier_windows": tier_windows,
        "apply_until": at_tokyo(base.replace(day=rule.apply_until_day), time(0)) + LAST_INSTANT_OF_THE_DAY,
        "draw_at": at_tokyo(base.replace(day=rule.draw_day), time(9, 0)),
        "publish_at": at_tokyo(base.replace(day=rule.publish_day), time(12, 0)),
        "pay_by": at_tokyo(base.replace(day=rule.pay_by_day), time(23, 59)) + LAST_INSTANT_OF_THE_MINUTE,
        "release_at": at_tokyo(base.replace(day=rule.release_day), rule.release_time),
    }


CAP_FIELDS = ("max_applications", "max_koma_per_choice", "max_koma_total", "max_wins", "max_weekday_wins",
              "max_holiday_wins", "pay_days_before")
WINDOW_FIELDS = ("apply_until", "draw_at", "publish_at", "pay_by", "release_at")


def _set_windows(round_: LotteryRound, values: dict) -> None:
    tiers = values.get("tier_windows")
    if tiers is not None:
        if not tiers:
            raise RoundError("lottery_no_tier")
        round_.tier_windows = {str(t): at.isoformat() for t, at in sorted(tiers.items())}
        round_.apply_from = min(tiers.values())
    for name in WINDOW_FIELDS:
        if values.get(name) is not None:
            setattr(round_, name, values[name])
    if not (round_.apply_from < round_.apply_until < round_.draw_at <= round_.publish_at < round_.pay_by
            <= round_.release_at):
        raise RoundError("lottery_window_order")
    for name in CAP_FIELDS:
        if name in values:
            setattr(round_, name, values[name])


def create_round(rooms: list[Room], target_month: date, *, staff: User, now: datetime | None = None,
                 title: str = "", overrides: dict | None = None) -> LotteryRound:
    """A draft round for `rooms` in `target_month`, its dates and caps from the first room's rule, as overridden.

    A room is in at most one round per month: the database refuses a second (lottery_room_taken)."""
    now = now or now_utc()
    if not rooms:
        raise RoundError("lottery_no_rooms")
    month = target_month.replace(day=1)
    rule = default_rule(rooms[0])
    values = windows_from_rule(rule, month)
    values.update({name: getattr(rule, name) for name in CAP_FIELDS})
    values.update(overrides or {})
    first = rooms[0]
    round_ = LotteryRound(key=f"{month:%Y-%m}-{first.id}", title=title or f"{first.name} {month:%Y-%m}",
                          target_month=month, state=RoundState.DRAFT, created_by_id=staff.id, created_at=now,
                          apply_from=now, apply_until=now, draw_at=now, publish_at=now, pay_by=now, release_at=now)
    _set_windows(round_, values)
    round_.rooms = [LotteryRoundRoom(room_id=room.id, target_month=month) for room in rooms]
    try:
        with db.session.begin_nested():
            db.session.add(round_)
            db.session.flush()
    except IntegrityError as exc:
        raise RoundError("lottery_room_taken") from exc
    record(ROUND, round_.id, "created", actor_id=staff.id, rooms=[r.id for r in rooms], month=f"{month:%Y-%m}")
    return round_


def update_round(round_: LotteryRound, values: dict, *, staff: User) -> None:
    """Staff's per-month override of dates and caps: only before any application is frozen (draft or open)."""
    if round_.state not in (RoundState.DRAFT, RoundState.OPEN):
        raise RoundError("lottery_frozen")
    before = _snapshot(round_)
    _set_windows(round_, values)
    after = _snapshot(round_)
    changes = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
    if changes:
        record(ROUND, round_.id, "changed", actor_id=staff.id, changes=changes)


def _snapshot(round_: LotteryRound) -> dict:
    """The round's dates and caps as JSON-ready values, to audit what a change changed."""
    values = {name: getattr(round_, name) for name in (*WINDOW_FIELDS, *CAP_FIELDS)}
    values = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in values.items()}
    values["tier_windows"] = dict(round_.tier_windows or {})
    return values


def _move(round_: LotteryRound, target: RoundState, *, actor_id: int | None, **details) -> None:
    current = RoundState(round_.state)
    if target not in ROUND_TRANSITIONS[current]:
        raise RoundError("lottery_wrong_state")
    round_.state = target
    record(ROUND, round_.id, f"{current}->{target}", actor_id=actor_id, **details)


def open_round(round_: LotteryRound, *, staff: User) -> None:
    _move(round_, RoundState.OPEN, actor_id=staff.id)


def tier_opens_at(round_: LotteryRound, tier: int) -> datetime | None:
    """When `tier` may start applying, or None: the round is not for that tier."""
    value = (round_.tier_windows or {}).get(str(tier))
    return datetime.fromisoformat(value) if value else None


def accepting(round_: LotteryRound, tier: int, now: datetime) -> bool:
    """Open, and `now` inside the tier's window: from its opening to the last instant of the closing day."""
    opens = tier_opens_at(round_, tier)
    return round_.state == RoundState.OPEN and opens is not None and opens <= now <= round_.apply_until


# --- the close and the draw ------------------------------------------------------------------------------


def parties_of(round_: LotteryRound) -> list[LotteryParty]:
    """The round's parties with their applications, slots, person and group loaded in a few queries: the close
    (the manifest), the draw (outcomes) and publication (bookings, mails) read them all, never one by one."""
    return list(db.session.scalars(
        select(LotteryParty).where(LotteryParty.round_id == round_.id).order_by(LotteryParty.pseudonym)
        .options(selectinload(LotteryParty.applications).selectinload(LotteryApplication.slots)
                 .joinedload(LotteryApplicationSlot.room),
                 selectinload(LotteryParty.applications).joinedload(LotteryApplication.exemption_kind),
                 joinedload(LotteryParty.user), joinedload(LotteryParty.group))))


def live_applications(party: LotteryParty) -> list[LotteryApplication]:
    return [a for a in party.applications if a.withdrawn_at is None]


def build_manifest(round_: LotteryRound) -> dict:
    """The canonical, pseudonymised manifest of the round's live applications (draw.manifest sorts it)."""
    parties = []
    for party in parties_of(round_):
        choices = tuple(
            lottery_draw.Choice(rank=a.rank, slots=tuple(sid for s in a.slots for sid in s.slot_ids()),
                                koma=a.koma, holiday=a.holiday)
            for a in live_applications(party))
        if choices:
            parties.append(lottery_draw.Party(id=party.pseudonym, tier=party.tier, choices=choices))
    caps = lottery_draw.Caps(wins=round_.max_wins, koma=round_.max_koma_total,
                             weekday_wins=round_.max_weekday_wins, holiday_wins=round_.max_holiday_wins)
    return lottery_draw.manifest(round_.key, parties, caps)


def freeze(round_: LotteryRound, *, now: datetime, actor_id: int | None = None) -> None:
    """At the close: the manifest is fixed and hashed, and a secret is drawn and committed to (published now)."""
    if now <= round_.apply_until:
        raise RoundError("lottery_not_closed_yet")
    document = build_manifest(round_)
    secret = secrets.token_hex(32)
    round_.manifest, round_.manifest_hash = document, lottery_draw.manifest_hash(document)
    round_.secret, round_.commitment, round_.committed_at = secret, lottery_draw.commitment(secret), now
    _move(round_, RoundState.CLOSED, actor_id=actor_id, manifest_hash=round_.manifest_hash,
          commitment=round_.commitment, parties=len(document["parties"]))


def fix_public_value(round_: LotteryRound, value: str, source: str, *, staff: User, now: datetime) -> None:
    """The public value, chosen and published after the close (e.g. a lottery number drawn that day)."""
    value = (value or "").strip()
    if round_.state != RoundState.CLOSED:
        raise RoundError("lottery_wrong_state")
    if not value:
        raise RoundError("lottery_public_value_missing")
    if round_.public_value is not None:
        raise RoundError("lottery_public_value_fixed")  # once: a second value would let staff choose the seed
    if now <= round_.committed_at:
        raise RoundError("lottery_public_value_early")
    round_.public_value, round_.public_value_source, round_.public_value_fixed_at = value, source.strip(), now
    record(ROUND, round_.id, "public value fixed", actor_id=staff.id, value=value, source=source)


OUTCOMES = {"won": Outcome.WON, "taken": Outcome.LOST, "cap": Outcome.SKIPPED_BY_CAP}


def run_draw(round_: LotteryRound, *, staff: User, now: datetime) -> lottery_draw.Result:
    """The draw, from the frozen manifest, the committed secret and the public value; the results are stored
    (each party's place, each application's outcome) but shown to no one until publication."""
    if round_.state != RoundState.CLOSED:
        raise RoundError("lottery_wrong_state")
    if now < round_.draw_at:
        raise RoundError("lottery_too_early")
    if not round_.public_value:
        raise RoundError("lottery_public_value_missing")
    try:
        result = lottery_draw.draw(round_.manifest, round_.secret, round_.public_value,
                                   committed_at=round_.committed_at, public_value_fixed_at=round_.public_value_fixed_at)
    except lottery_draw.DrawError as exc:
        raise RoundError("lottery_draw_refused", detail=str(exc)) from exc  # the message says why
    positions = result.positions
    keys = {p: lottery_draw.party_key(result.seed, p) for p in result.order}
    for party in parties_of(round_):
        party.position, party.key = positions.get(party.pseudonym), keys.get(party.pseudonym)
        for application in live_applications(party):
            application.outcome = OUTCOMES[result.outcomes.get((party.pseudonym, application.rank), "taken")]
    round_.publication = lottery_draw.publication(round_.manifest, round_.secret, round_.public_value, result)
    round_.result_hash, round_.drawn_at = result.result_hash, now
    _move(round_, RoundState.DRAWN, actor_id=staff.id, result_hash=result.result_hash, wins=len(result.wins))
    return result


def verify_round(round_: LotteryRound) -> list[str]:
    """`flask lottery verify ROUND`: reproduce the stored publication; empty means it holds."""
    if round_.publication is None:
        return ["the round has not been drawn"]
    return lottery_draw.verify(round_.publication)


# --- publication: results told, wins become bookings -----------------------------------------------------


def win_deadline(round_: LotteryRound, start_at: datetime) -> datetime:
    """The earlier of the round's pay-by and 23:59 `pay_days_before` days before the day of use."""
    day = business_date(start_at) - timedelta(days=round_.pay_days_before)
    return min(round_.pay_by, at_tokyo(day, time(23, 59)) + LAST_INSTANT_OF_THE_MINUTE)


def _let(round_: LotteryRound, application: LotteryApplication, part: LotteryApplicationSlot,
         now: datetime) -> Booking | None:
    """One part of a won bundle as a booking held until its payment deadline, or None when it cannot be let."""
    party = application.party
    room = part.room
    lock_room(room.id)
    if closure_reason(room, part.day) or not room.bookable_online:
        return None
    slot = division_slot(room, part.day, part.divisions)
    retire_lapsed_holds(overlapping(room.id, slot.start_at, slot.end_at), now, reason="retired by a lottery win")
    if db.session.scalar(select(Booking.id).where(overlapping(room.id, slot.start_at, slot.end_at),
                                                  active_clause(now)).limit(1)) is not None:
        return None
    residency = fee_residency(party.group) if party.group is not None else party.user.residency
    price = quote(room, slot, residency)
    deadline = win_deadline(round_, slot.start_at)
    booking = Booking(user_id=party.user_id, room_id=room.id, start_at=slot.start_at, end_at=slot.end_at,
                      state=BookingState.HELD, hold_expires_at=max(deadline, now + timedelta(hours=1)),
                      pay_mode="deadline", price=price.total, price_detail=price.as_detail(), residency=residency,
                      division_codes=part.division_codes, channel="lottery", group_id=party.group_id,
                      created_at=now)
    db.session.add(booking)
    db.session.flush()
    record("booking", booking.id, "held", actor_id=party.user_id, price=price.total, channel="lottery",
           pay_mode="deadline", until=booking.hold_expires_at.isoformat(), lottery_round=round_.key,
           application=application.id)
    if application.exemption_kind is not None:
        attach(booking, application.exemption_kind, actor=party.user, now=now, note=application.exemption_note)
    return booking


def _make_payable(booking: Booking) -> None:
    from ..booking import confirm
    from ..checkout import start_checkout

    if is_pending(booking):
        return
    if booking.price == 0 or not current_app.config["PAYMENTS_ENABLED"]:
        confirm(booking, actor_id=booking.user_id, reason="lottery win, free" if booking.price == 0
                else "lottery win, no online payment")
    else:
        start_checkout(booking)


def publish(round_: LotteryRound, *, staff: User, now: datetime) -> Counter:
    """Reveal the secret and the results, let each win as bookings payable by its deadline (a bundle whole or
    not at all), and tell every party by mail; returns the counts."""
    if round_.state != RoundState.DRAWN:
        raise RoundError("lottery_wrong_state")
    if now < round_.publish_at:
        raise RoundError("lottery_too_early")
    counts: Counter = Counter()
    for party in parties_of(round_):
        for application in live_applications(party):
            if application.outcome != Outcome.WON:
                counts[application.outcome] += 1
                continue
            try:
                with db.session.begin_nested():
                    bookings = []
                    for part in application.slots:
                        booking = _let(round_, application, part, now)
                        if booking is None:
                            raise _Unavailable
                        part.booking_id = booking.id
                        bookings.append(booking)
                    for booking in bookings:
                        _make_payable(booking)
                counts["won"] += 1
            except _Unavailable:
                application.outcome = Outcome.UNAVAILABLE
                application.outcome_reason = "a slot of the bundle was closed or taken after the draw"
                record("lottery_application", application.id, "win unavailable", actor_id=staff.id)
                counts["unavailable"] += 1
        if live_applications(party) and party.user.mailable:
            after_commit(_results_mail(round_, party))
    round_.published_at = now
    _move(round_, RoundState.PUBLISHED, actor_id=staff.id, **{k: v for k, v in counts.items()})
    return counts


class _Unavailable(Exception):
    pass


def _results_mail(round_: LotteryRound, party: LotteryParty):
    user = party.user
    applications = live_applications(party)
    wins = [a for a in applications if a.outcome == Outcome.WON]
    with force_locale(user.locale or current_app.config["BABEL_DEFAULT_LOCALE"]):
        subject = (_("Lottery results: you won %(count)d", count=len(wins)) if wins
                   else _("Lottery results: no win this time"))
        bookings = [db.session.get(Booking, s.booking_id) for a in wins for s in a.slots if s.booking_id]
        body = render_template("lottery/results_mail.txt", round=round_, party=party, applications=applications,
                               bookings=bookings, pay_links={b.id: pay_url(b) for b in bookings},
                               link=external_url("lottery.round_page", key=round_.key),
                               mine=external_url("bookings.mine"))
    return partial(send_mail, user.email, subject, body)


# --- after publication -----------------------------------------------------------------------------------


def win_bookings(application: LotteryApplication) -> list[Booking]:
    return [db.session.get(Booking, s.booking_id) for s in application.slots if s.booking_id]


def cancel_win(application: LotteryApplication, *, staff: User, reason: str, now: datetime) -> None:
    """Staff cancel a win, with a reason: its bookings are cancelled (a paid one by the ward's reason, refunded
    in full), the resident is told, and so are the losers of its slots, first."""
    from ..cancellation import cancel_for_ward_reason
    from ..checkout import release

    reason = (reason or "").strip()
    if not reason:
        raise RoundError("lottery_reason_required")
    if application.outcome != Outcome.WON or application.round.state not in (
            RoundState.PUBLISHED, RoundState.SETTLING, RoundState.RELEASED):
        raise RoundError("lottery_not_a_win")
    for booking in win_bookings(application):
        if booking.state == BookingState.CONFIRMED:
            cancel_for_ward_reason(booking, staff, "ward", note=reason, now=now)
        elif booking.state == BookingState.HELD:
            if booking.payment is not None and booking.payment.state in (PaymentState.NEW, PaymentState.PENDING,
                                                                         PaymentState.FAILED):
                release(booking.payment, booking, reason=f"lottery win cancelled: {reason}",
                        state=PaymentState.CANCELLED, now=now)
            if booking.state == BookingState.HELD:
                booking.transition(BookingState.CANCELLED, actor_id=staff.id, reason=f"lottery win cancelled: {reason}")
            if booking.user.mailable:  # a paid one was told by the ward's cancellation, with its refund
                after_commit(_win_cancelled_mail(booking, reason))
    application.outcome, application.outcome_reason = Outcome.CANCELLED, reason
    record("lottery_application", application.id, "win cancelled", actor_id=staff.id, reason=reason)
    tell_losers(application, now=now)


def _win_cancelled_mail(booking: Booking, reason: str):
    user = booking.user
    with force_locale(user.locale or current_app.config["BABEL_DEFAULT_LOCALE"]):
        subject = _("Your lottery win has been cancelled by the facility")
        body = render_template("lottery/win_cancelled_mail.txt", booking=booking, reason=reason,
                               link=external_url("bookings.detail", booking_id=booking.id))
    return partial(send_mail, user.email, subject, body)


def forfeited(application: LotteryApplication) -> bool:
    """A win whose bookings no longer hold its slots (unpaid at the deadline, or cancelled)."""
    bookings = win_bookings(application)
    return bool(bookings) and not any(b.state == BookingState.CONFIRMED or b.state == BookingState.HELD
                                      for b in bookings)


def tell_losers(application: LotteryApplication, *, now: datetime) -> int:
    """Mail the parties that lost a slot of this forfeited win: it opens first-come at release_at, and they
    hear it before anyone else does. Once per win (losers_told_at)."""
    if application.losers_told_at is not None:
        return 0
    round_ = application.round
    ids = {sid for part in application.slots for sid in part.slot_ids()}
    told = 0
    others = db.session.scalars(select(LotteryApplication).where(
        LotteryApplication.round_id == round_.id, LotteryApplication.id != application.id,
        LotteryApplication.withdrawn_at.is_(None),
        LotteryApplication.outcome.in_([Outcome.LOST, Outcome.SKIPPED_BY_CAP]))
        .options(selectinload(LotteryApplication.slots), joinedload(LotteryApplication.party))).all()
    parties = {a.party for a in others if ids.intersection(sid for s in a.slots for sid in s.slot_ids())}
    for party in sorted(parties, key=lambda p: p.position or 0):
        if party.user.mailable:
            after_commit(_freed_mail(round_, party, application))
            told += 1
    application.losers_told_at = now
    record("lottery_application", application.id, "losers told", parties=told)
    return told


def _freed_mail(round_: LotteryRound, party: LotteryParty, application: LotteryApplication):
    user = party.user
    with force_locale(user.locale or current_app.config["BABEL_DEFAULT_LOCALE"]):
        subject = _("A lottery slot you applied for has become free")
        body = render_template("lottery/freed_mail.txt", round=round_, application=application,
                               link=external_url("public.room", room_id=application.slots[0].room_id))
    return partial(send_mail, user.email, subject, body)


def run_lottery(*, now: datetime | None = None) -> dict[str, int]:
    """The job: close rounds whose window ended, move paid-up rounds on, tell losers of forfeited wins, release."""
    now = now or now_utc()
    counts: Counter = Counter()
    for round_ in db.session.scalars(select(LotteryRound).where(
            LotteryRound.state == RoundState.OPEN, LotteryRound.apply_until < now)
            .with_for_update(skip_locked=True)).all():
        freeze(round_, now=now)
        counts["closed"] += 1
    for round_ in db.session.scalars(select(LotteryRound).where(
            LotteryRound.state.in_([RoundState.PUBLISHED, RoundState.SETTLING]))
            .with_for_update(skip_locked=True)).all():
        for application in db.session.scalars(select(LotteryApplication).where(
                LotteryApplication.round_id == round_.id, LotteryApplication.outcome == Outcome.WON,
                LotteryApplication.losers_told_at.is_(None))).all():
            if forfeited(application):
                counts["losers_told"] += tell_losers(application, now=now)
                counts["forfeited"] += 1
        if round_.state == RoundState.PUBLISHED and now > round_.pay_by:
            _move(round_, RoundState.SETTLING, actor_id=None)
            counts["settling"] += 1
        if round_.state == RoundState.SETTLING and now >= round_.release_at:
            round_.released_at = now
            _move(round_, RoundState.RELEASED, actor_id=None)
            counts["released"] += 1
    return dict(counts)
