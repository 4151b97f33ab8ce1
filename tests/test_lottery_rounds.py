"""Lottery rounds on the database: windows to the second, caps, one party one weight, bundles, the win cap,
wins as bookings paid by a deadline (paid in the minute, cancelled the minute after, a late payment returned),
freed slots hidden until release and their losers told first, and a published draw that any tampering breaks.

Every round here lets a month three months after the real one; its application window is in the month two
before that, and each step passes its own `now` (a webhook runs under a frozen clock).
"""
from datetime import date, time, timedelta

import pytest
import time_machine
from sqlalchemy import select

from reservations.extensions import db
from reservations.models import (
    Booking,
    BookingState,
    ExemptionKind,
    ExemptionState,
    Group,
    GroupStatus,
    LotteryApplication,
    LotteryParty,
    Outcome,
    PaymentState,
    Refund,
    Role,
    RoundState,
)
from reservations.payments import get_gateway
from reservations.services import checkout, expiry
from reservations.services.booking import place_hold
from reservations.services.deadline import LAST_INSTANT_OF_THE_MINUTE
from reservations.services.errors import BookingError
from reservations.services.lottery import rounds
from reservations.services.lottery.applications import Part, apply, change_rank, withdraw
from reservations.services.lottery.rounds import LAST_INSTANT_OF_THE_DAY, RoundError
from reservations.services.rules import division_slot
from reservations.timeutil import at_tokyo, business_date, now_utc, shift_months
from tests.conftest import weekday_on_or_after
from tests.helpers import audit_actions, fetch_intent, outbox, post_event

MONTH = shift_months(business_date(now_utc()).replace(day=1), 3)  # the month let
BASE = shift_months(MONTH, -2)  # the month the round runs in
APPLYING = at_tokyo(BASE.replace(day=5), time(12))
CLOSE = at_tokyo(BASE.replace(day=10), time(0)) + LAST_INSTANT_OF_THE_DAY  # 23:59:59.999999 on the 10th
COMMITTED = CLOSE + timedelta(minutes=1)
DRAW = at_tokyo(BASE.replace(day=11), time(9))
PUBLISH = at_tokyo(BASE.replace(day=11), time(12))
PAY_BY = at_tokyo(BASE.replace(day=20), time(23, 59)) + LAST_INSTANT_OF_THE_MINUTE
RELEASE = at_tokyo(BASE.replace(day=21), time(9))
DAY = weekday_on_or_after(MONTH.replace(day=8), 1)  # a Tuesday of the month let
NEXT_DAY = DAY + timedelta(days=1)


@pytest.fixture
def staff(make_user):
    return make_user("staff@example.com", role=Role.STAFF)


@pytest.fixture
def people(make_user):
    return [make_user(f"p{n}@example.com", name=f"申込者 {n}") for n in range(6)]


def resident_group(user, name="中央合唱団") -> Group:
    group = Group(name=name, representative_id=user.id, member_count=5, resident_count=5, category="general",
                  status=GroupStatus.ACTIVE, valid_until=MONTH + timedelta(days=400))
    db.session.add(group)
    db.session.commit()
    return group


def make_round(rooms, staff, **overrides):
    values = dict(tier_windows={1: at_tokyo(shift_months(MONTH, -3), time(0)), 2: at_tokyo(BASE, time(0))},
                  apply_until=CLOSE, draw_at=DRAW, publish_at=PUBLISH, pay_by=PAY_BY, release_at=RELEASE)
    values.update(overrides)
    round_ = rounds.create_round(rooms, MONTH, staff=staff, now=at_tokyo(BASE, time(0)) - timedelta(days=40),
                                 overrides=values)
    rounds.open_round(round_, staff=staff)
    db.session.commit()
    return round_


def file(round_, user, room, codes=("AFTERNOON",), *, day=DAY, at=APPLYING, **kw):
    application = apply(round_, user, day=day, parts=[Part(room.id, tuple(codes))], now=at, **kw)
    db.session.commit()
    return application


def draw_and_publish(round_, staff, public_value="2027 宝くじ 第1等 123456"):
    rounds.freeze(round_, now=COMMITTED)
    rounds.fix_public_value(round_, public_value, "宝くじ当せん番号", staff=staff, now=DRAW - timedelta(hours=1))
    rounds.run_draw(round_, staff=staff, now=DRAW)
    counts = rounds.publish(round_, staff=staff, now=PUBLISH)
    db.session.commit()
    return counts


def bookings_of(application) -> list[Booking]:
    return rounds.win_bookings(application)


# -- (1) the close is 23:59:59 JST: that second is in, 00:00:00 the next day is out ------------------------------

def test_an_application_in_the_last_second_of_the_closing_day_is_taken_and_one_at_midnight_is_refused(
        app, room, staff, people):
    round_ = make_round([room], staff)

    last_second = at_tokyo(BASE.replace(day=10), time(23, 59, 59))
    taken = file(round_, people[0], room, at=last_second)
    with pytest.raises(RoundError) as refused:
        file(round_, people[1], room, at=at_tokyo(BASE.replace(day=11), time(0)))

    assert taken.id and refused.value.code == "lottery_not_accepting"
    assert db.session.scalars(select(LotteryApplication.id)).all() == [taken.id]


def test_each_tier_applies_in_its_own_window(app, room, staff, people):
    round_ = make_round([room], staff)
    group = resident_group(people[0])
    early = at_tokyo(shift_months(MONTH, -3).replace(day=20), time(12))  # a month before everyone else

    file(round_, people[0], room, group=group, at=early)
    with pytest.raises(RoundError, match="lottery_not_accepting"):
        file(round_, people[1], room, at=early)
    assert file(round_, people[1], room, at=APPLYING).party.tier == 2


# -- (2) caps -----------------------------------------------------------------------------------------------------

def test_the_sixth_application_of_a_party_capped_at_5_is_refused(app, room, staff, people):
    round_ = make_round([room], staff, max_applications=5)
    slots = [(DAY, c) for c in ("MORNING", "AFTERNOON", "EVENING")] + [(NEXT_DAY, c) for c in ("MORNING", "AFTERNOON",
                                                                                                "EVENING")]
    for day, code in slots[:5]:
        file(round_, people[0], room, (code,), day=day)

    with pytest.raises(RoundError) as refused:
        file(round_, people[0], room, (slots[5][1],), day=slots[5][0])

    assert refused.value.code == "lottery_too_many_applications" and "5" in refused.value.message
    assert [a.rank for a in db.session.scalars(select(LotteryApplication).order_by(LotteryApplication.rank))] == [
        1, 2, 3, 4, 5]


def test_koma_per_choice_and_the_choice_itself_are_checked(app, room, staff, people):
    round_ = make_round([room], staff, max_koma_per_choice=2)
    with pytest.raises(RoundError, match="lottery_too_many_koma"):
        file(round_, people[0], room, ("MORNING", "AFTERNOON", "EVENING"))
    with pytest.raises(RoundError, match="lottery_wrong_month"):
        file(round_, people[0], room, day=MONTH - timedelta(days=1))
    with pytest.raises(BookingError, match="invalid_divisions"):
        file(round_, people[0], room, ("MORNING", "EVENING"))  # not consecutive
    two = file(round_, people[0], room, ("MORNING", "AFTERNOON"))
    assert (two.koma, two.slots[0].division_codes) == (2, "MORNING,AFTERNOON")


def test_one_person_applies_once_for_a_slot_as_themselves_or_for_a_group_never_both(app, room, staff, people):
    round_ = make_round([room], staff)
    group = resident_group(people[0])
    file(round_, people[0], room, ("AFTERNOON",), group=group)

    with pytest.raises(RoundError, match="lottery_one_party_per_slot"):
        file(round_, people[0], room, ("AFTERNOON",))
    file(round_, people[0], room, ("MORNING",))  # another slot as themselves: a second party, its own weight
    file(round_, people[0], room, ("MORNING",), group=group, day=NEXT_DAY)

    parties = db.session.scalars(select(LotteryParty).order_by(LotteryParty.ref)).all()
    assert [p.ref for p in parties] == [f"group:{group.id}", f"user:{people[0].id}"]
    assert [len(p.applications) for p in parties] == [2, 1]


def test_applications_change_rank_or_are_withdrawn_until_the_close_and_not_after(app, room, staff, people):
    round_ = make_round([room], staff)
    first, second = file(round_, people[0], room, ("MORNING",)), file(round_, people[0], room, ("EVENING",))

    change_rank(second, 1, actor=people[0], now=APPLYING)
    db.session.commit()
    assert (first.rank, second.rank) == (2, 1)
    withdraw(first, actor=people[0], now=APPLYING)
    db.session.commit()
    with pytest.raises(RoundError, match="lottery_not_accepting"):
        withdraw(second, actor=people[0], now=CLOSE + timedelta(seconds=1))
    with pytest.raises(RoundError, match="staff_only"):
        withdraw(second, actor=people[1], now=APPLYING)

    rounds.freeze(round_, now=COMMITTED)
    assert [len(p["choices"]) for p in round_.manifest["parties"]] == [1]  # the withdrawn choice is not drawn
    assert ("withdrawn", "") in audit_actions("lottery_application", first.id)


# -- the close, the public value, the draw -------------------------------------------------------------------------

def test_the_close_commits_before_the_public_value_and_the_draw_refuses_an_early_one(app, room, staff, people):
    round_ = make_round([room], staff)
    file(round_, people[0], room)
    with pytest.raises(RoundError, match="lottery_not_closed_yet"):
        rounds.freeze(round_, now=CLOSE)
    rounds.freeze(round_, now=COMMITTED)

    with pytest.raises(RoundError, match="lottery_public_value_early"):
        rounds.fix_public_value(round_, "123", "x", staff=staff, now=COMMITTED)
    with pytest.raises(RoundError, match="lottery_public_value_missing"):
        rounds.run_draw(round_, staff=staff, now=DRAW)
    rounds.fix_public_value(round_, "123", "x", staff=staff, now=COMMITTED + timedelta(seconds=1))
    with pytest.raises(RoundError, match="lottery_too_early"):
        rounds.run_draw(round_, staff=staff, now=DRAW - timedelta(seconds=1))
    rounds.run_draw(round_, staff=staff, now=DRAW)
    db.session.commit()

    assert round_.state == RoundState.DRAWN and round_.commitment and round_.result_hash
    assert rounds.verify_round(round_) == []


def test_the_job_closes_a_round_when_its_window_ends(app, room, staff, people):
    round_ = make_round([room], staff)
    file(round_, people[0], room)

    assert rounds.run_lottery(now=CLOSE) == {}
    assert rounds.run_lottery(now=CLOSE + timedelta(microseconds=1)) == {"closed": 1}
    db.session.commit()
    assert round_.state == RoundState.CLOSED and round_.manifest_hash and round_.secret


# -- (6) bundles: the 控室 went to another party, so the bundle loses whole ------------------------------------------

def test_a_bundle_whose_green_room_went_to_another_party_loses_whole_and_no_partial_booking_exists(
        app, make_room, staff, people):
    hall, green_room = make_room("ホール"), make_room("控室")
    round_ = make_round([hall, green_room], staff)
    group = resident_group(people[0])  # tier 1: drawn before any tier-2 party
    file(round_, people[0], green_room, ("AFTERNOON",), group=group)
    bundle = apply(round_, people[1], day=DAY, parts=[Part(hall.id, ("AFTERNOON",)), Part(green_room.id,
                                                                                          ("AFTERNOON",))],
                   now=APPLYING)
    db.session.commit()

    draw_and_publish(round_, staff)

    assert bundle.outcome == Outcome.LOST and bookings_of(bundle) == []
    assert db.session.scalars(select(Booking.room_id)).all() == [green_room.id]  # nothing in the hall


# -- (7) the win cap ---------------------------------------------------------------------------------------------

def test_with_a_win_cap_of_2_a_party_with_5_choices_wins_2_and_the_rest_are_skipped_by_cap(
        app, room, staff, people):
    round_ = make_round([room], staff, max_wins=2)
    choices = [(DAY, "MORNING"), (DAY, "AFTERNOON"), (DAY, "EVENING"), (NEXT_DAY, "MORNING"), (NEXT_DAY, "EVENING")]
    applications = [file(round_, people[0], room, (code,), day=day) for day, code in choices]

    draw_and_publish(round_, staff)

    assert [a.outcome for a in applications] == [Outcome.WON, Outcome.WON] + [Outcome.SKIPPED_BY_CAP] * 3
    assert len(db.session.scalars(select(Booking)).all()) == 2
    [mail] = outbox(app)
    assert mail["To"] == people[0].email


# -- (8) tiers, on the database -------------------------------------------------------------------------------

def test_a_resident_group_beats_a_person_for_the_same_slot(app, room, staff, people):
    round_ = make_round([room], staff)
    person = file(round_, people[1], room)
    grouped = file(round_, people[0], room, group=resident_group(people[0]))

    draw_and_publish(round_, staff)

    assert (grouped.outcome, person.outcome) == (Outcome.WON, Outcome.LOST)
    assert (grouped.party.position, person.party.position) == (1, 2)
    [booking] = bookings_of(grouped)
    assert booking.group_id == grouped.party.group_id and booking.channel == "lottery"


# -- (9) the deadline: paid in its minute is booked; unpaid a minute later is cancelled; late money goes back ------

@pytest.mark.payments
def test_a_win_paid_in_the_deadline_minute_is_booked(app, localstripe, room, staff, people):
    round_ = make_round([room], staff)
    win = file(round_, people[0], room)
    draw_and_publish(round_, staff)
    [booking] = bookings_of(win)
    assert (booking.state, booking.pay_mode, booking.hold_expires_at) == (BookingState.HELD, "deadline", PAY_BY)

    minute = PAY_BY - LAST_INSTANT_OF_THE_MINUTE  # 23:59 on the pay-by day
    outcome, _ = checkout.pay(booking.payment, token=localstripe.card_token(), now=minute + timedelta(seconds=59))
    db.session.commit()

    assert outcome == "confirmed" and booking.state == BookingState.CONFIRMED
    assert booking.payment.state == PaymentState.CAPTURED and booking.payment.captured_amount == booking.price


def test_the_deadline_is_the_earlier_of_pay_by_and_n_days_before_use(app, room, staff, people):
    round_ = make_round([room], staff, pay_days_before=3)
    # Three days before the 1st of the month let is still after pay-by: pay-by is the earlier.
    assert rounds.win_deadline(round_, at_tokyo(MONTH, time(9))) == PAY_BY
    round_.pay_days_before = 60
    assert rounds.win_deadline(round_, at_tokyo(DAY, time(13))) == at_tokyo(
        DAY - timedelta(days=60), time(23, 59)) + LAST_INSTANT_OF_THE_MINUTE < PAY_BY


@pytest.mark.payments
def test_an_unpaid_win_is_cancelled_a_minute_later_its_slot_stays_hidden_until_release_and_its_losers_hear_first(
        app, localstripe, room, staff, people):
    round_ = make_round([room], staff)
    a, b = file(round_, people[0], room), file(round_, people[1], room)
    draw_and_publish(round_, staff)
    winner, loser = (a, b) if a.outcome == Outcome.WON else (b, a)
    [booking] = bookings_of(winner)
    slot = division_slot(room, DAY, ["AFTERNOON"])
    mails_before = len(outbox(app))

    assert expiry.release_expired_holds(now=PAY_BY - timedelta(seconds=1)) == {}  # 23:59:59: still payable
    assert expiry.release_expired_holds(now=PAY_BY + timedelta(microseconds=1)) == {"deadline_cancelled": 1}
    db.session.commit()
    assert booking.state == BookingState.CANCELLED

    with pytest.raises(BookingError, match="lottery"):  # freed, but hidden until release_at
        place_hold(people[2], room, slot, now=PAY_BY + timedelta(minutes=1))
    assert rounds.run_lottery(now=PAY_BY + timedelta(minutes=1)) == {"forfeited": 1, "losers_told": 1,
                                                                     "settling": 1}
    db.session.commit()
    told = outbox(app)[mails_before + 1:]  # after the winner's cancellation notice
    assert [m["To"] for m in told] == [loser.party.user.email]
    assert rounds.run_lottery(now=PAY_BY + timedelta(minutes=2)) == {}  # once

    with pytest.raises(BookingError, match="lottery"):
        place_hold(people[2], room, slot, now=RELEASE - timedelta(seconds=1))
    # At release_at the slot opens first-come, whether or not the job has run yet.
    taken = place_hold(people[2], room, slot, now=RELEASE)
    assert rounds.run_lottery(now=RELEASE) == {"released": 1}
    db.session.commit()
    assert taken.state == BookingState.HELD and round_.state == RoundState.RELEASED


@pytest.mark.payments
def test_a_payment_webhook_after_the_deadline_is_refunded(app, client, localstripe, room, staff, people):
    round_ = make_round([room], staff)
    win = file(round_, people[0], room)
    draw_and_publish(round_, staff)
    [booking] = bookings_of(win)
    payment = booking.payment
    checkout.ensure_intent(payment, now=PUBLISH + timedelta(hours=1))  # the pay page opened in time
    db.session.commit()
    gateway = get_gateway()
    gateway.confirm_with_token(payment.intent_id, localstripe.card_token(), payment_key=payment.idempotency_key)
    gateway.capture(payment.intent_id, payment_key=payment.idempotency_key)

    with time_machine.travel(PAY_BY + timedelta(minutes=5), tick=False):  # the whole request after the deadline
        response = post_event(client, localstripe, "payment_intent.succeeded",
                              fetch_intent(localstripe, payment.intent_id))

    db.session.expire_all()
    assert response.status_code == 200 and response.json["outcome"] == "refunded"
    assert booking.state == BookingState.CANCELLED
    [refund] = db.session.scalars(select(Refund)).all()
    assert refund.amount == booking.price == payment.captured_amount


# -- (10) audit: any change to what is published breaks the verification ------------------------------------------

def test_a_published_round_verifies_and_any_tampering_with_it_is_found(app, room, staff, people):
    round_ = make_round([room], staff)
    for person in people[:4]:
        file(round_, person, room)
    draw_and_publish(round_, staff)
    runner = app.test_cli_runner()

    assert rounds.verify_round(round_) == []
    ok = runner.invoke(args=["lottery", "verify", round_.key])
    assert ok.exit_code == 0 and round_.result_hash in ok.output

    for n in range(len(round_.publication["log"])):
        tampered = {**round_.publication, "log": list(round_.publication["log"])}
        tampered["log"][n] = tampered["log"][n].replace("p", "q", 1) + "."
        assert any("log" in p for p in rounds.lottery_draw.verify(tampered)), n
    round_.publication = {**round_.publication, "log": [*round_.publication["log"][:-1], "pass 9: nothing"]}
    db.session.commit()
    bad = runner.invoke(args=["lottery", "verify", round_.key])
    assert bad.exit_code == 1 and "log" in bad.output


def test_every_step_of_a_round_is_in_the_audit_trail(app, room, staff, people):
    round_ = make_round([room], staff)
    win = file(round_, people[0], room)
    draw_and_publish(round_, staff)
    rounds.cancel_win(win, staff=staff, reason="会場の設備故障", now=PUBLISH + timedelta(hours=2))
    db.session.commit()

    actions = [a for a, _ in audit_actions("lottery_round", round_.id)]
    assert actions == ["created", "draft->open", "open->closed", "public value fixed", "closed->drawn",
                       "drawn->published"]
    assert [a for a, _ in audit_actions("lottery_application", win.id)] == ["filed", "win cancelled", "losers told"]
    assert win.outcome == Outcome.CANCELLED and bookings_of(win)[0].state == BookingState.CANCELLED


# -- exemptions on a lottery application (issue test 11, on a win) -------------------------------------------------

@pytest.mark.payments
def test_a_win_applied_for_with_a_50_percent_exemption_is_due_at_half_and_one_needing_approval_waits(
        app, room, staff, people):
    half = ExemptionKind(code="WELFARE50", name_ja="福祉団体減免", rate_pct=50, legal_ground="条例第10条第2号",
                         eligible="general,welfare", needs_approval=False)
    asked = ExemptionKind(code="WARD100", name_ja="区主催事業", rate_pct=100, legal_ground="条例第10条第1号",
                          eligible="general", needs_approval=True)
    db.session.add_all([half, asked])
    db.session.commit()
    round_ = make_round([room], staff)
    first = file(round_, people[0], room, ("MORNING",), group=resident_group(people[0]), exemption_kind=half)
    second = file(round_, people[1], room, ("EVENING",), group=resident_group(people[1], "区民劇団"),
                  exemption_kind=asked)
    with pytest.raises(RoundError, match="exemption_not_eligible"):
        file(round_, people[2], room, ("AFTERNOON",), exemption_kind=half)  # a person, not a group

    draw_and_publish(round_, staff)

    [halved] = bookings_of(first)
    assert (halved.price, halved.exemption.full_fee, halved.exemption.reduction) == (1400, 2800, 1400)
    assert halved.payment.amount == 1400
    [waiting] = bookings_of(second)
    assert waiting.exemption.state == ExemptionState.PENDING and waiting.payment is None
    assert waiting.state == BookingState.HELD and waiting.hold_expires_at == PAY_BY


def test_a_second_round_for_the_same_room_and_month_is_refused(app, room, staff):
    make_round([room], staff)
    with pytest.raises(RoundError, match="lottery_room_taken"):
        make_round([room], staff)


def test_a_win_whose_slot_was_blocked_after_the_draw_is_unavailable_not_half_let(app, make_room, staff, people):
    hall, green_room = make_room("ホール"), make_room("控室")
    round_ = make_round([hall, green_room], staff)
    bundle = apply(round_, people[0], day=DAY, parts=[Part(hall.id, ("AFTERNOON",)),
                                                      Part(green_room.id, ("AFTERNOON",))], now=APPLYING)
    db.session.commit()
    slot = division_slot(green_room, DAY, ["AFTERNOON"])
    db.session.add(Booking(user_id=staff.id, room_id=green_room.id, start_at=slot.start_at, end_at=slot.end_at,
                           state=BookingState.CONFIRMED, price=0, residency="resident", kind="block",
                           division_codes="AFTERNOON"))
    db.session.commit()

    draw_and_publish(round_, staff)

    assert bundle.outcome == Outcome.UNAVAILABLE and bookings_of(bundle) == []
    assert db.session.scalars(select(Booking.kind)).all() == ["block"]


def test_rounds_from_the_rule_follow_the_month(app, room):
    rule = rounds.default_rule(room)
    windows = rounds.windows_from_rule(rule, date(2027, 6, 1))
    assert windows["apply_until"] == at_tokyo(date(2027, 4, 10), time(23, 59, 59, 999999))
    assert windows["tier_windows"] == {"1": at_tokyo(date(2027, 3, 1), time(0)), "2": at_tokyo(date(2027, 4, 1),
                                                                                                time(0))}
    assert (windows["pay_by"], windows["release_at"]) == (at_tokyo(date(2027, 4, 20), time(23, 59, 59, 999999)),
                                                          at_tokyo(date(2027, 4, 21), time(9)))
