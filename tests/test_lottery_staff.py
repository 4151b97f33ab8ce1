"""The staff lottery pages (/staff/lottery/): rounds made and changed, a room's standing rule, every step of a
round through its page, the applications, and applications taken at the counter; each scoped to the staff
member's buildings, and every step in the round's audit trail.

June 2027 by the usual rule (tests/lottery_helpers.py): everyone else applies 1-10 April, the close is
10 April 23:59:59 JST, the draw 11 April 09:00, publication at 12:00, payment by 20 April 23:59.
"""
import re
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta

import pytest
import time_machine
from sqlalchemy import select

from reservations.extensions import db
from reservations.models import (
    Booking,
    BookingState,
    Building,
    Group,
    LotteryApplication,
    LotteryRound,
    LotteryRule,
    Outcome,
    Role,
    Room,
    RoundState,
)
from reservations.services.deadline import LAST_INSTANT_OF_THE_MINUTE
from reservations.services.lottery import applications, rounds
from reservations.timeutil import at_tokyo
from tests.helpers import audit_actions, count, outbox
from tests.lottery_helpers import DAY, MONTH, draft_round, open_round, published_round

JST = lambda day, hh=0, mm=0, ss=0: at_tokyo(day, time(hh, mm, ss))  # noqa: E731
CLOSE = JST(date(2027, 4, 10)) + rounds.LAST_INSTANT_OF_THE_DAY
ROUND_ROUTES = ("/", "/edit", "/applications", "/apply")
ROUND_POSTS = ("/open", "/close", "/public-value", "/draw", "/publish", "/cancel-win", "/edit", "/apply")


@contextmanager
def signed_in_at(moment: datetime, client, user):
    """The clock stopped at `moment`, and `user` signed in then, reading English (a session signed at the real
    time would have run out by a clock two years ahead)."""
    with time_machine.travel(moment, tick=False):
        with client.session_transaction() as session:
            session.update({"_user_id": user.get_id(), "_fresh": True, "lang": "en"})
        yield


@pytest.fixture
def hall(make_room):
    return make_room("ホール")


@pytest.fixture
def staff(make_user, login_as):
    return login_as(make_user("staff@example.com", role=Role.STAFF, name="抽選 係"))


def round_of(round_id: int) -> LotteryRound:
    db.session.expire_all()
    return db.session.get(LotteryRound, round_id)


def page(response) -> str:
    return response.get_data(as_text=True)


ROUND_FIELDS = {
    "room": None, "month": "2027-06", "tier_2_from": "2027-04-01T00:00", "tier_1_from": "2027-03-01T00:00",
    "apply_until": "2027-04-10", "draw_at": "2027-04-11T09:00", "publish_at": "2027-04-11T12:00",
    "pay_by": "2027-04-20", "release_at": "2027-04-21T09:00", "max_applications": "10", "max_koma_per_choice": "3",
    "max_koma_total": "", "max_wins": "", "max_weekday_wins": "", "max_holiday_wins": "", "pay_days_before": "3",
}


def round_fields(room, /, **changes) -> dict:
    return {**ROUND_FIELDS, "room": str(room.id), **changes}


# -- scope ---------------------------------------------------------------------------------------------

def test_staff_of_another_building_get_404_on_every_round_route_and_finance_403(
        app, client, login_as, make_user, hall, staff):
    round_id = draft_round(hall.id, staff.id)
    other = Building(name="別の会館", name_kana="ベツノカイカン", name_en="Other Hall")
    db.session.add(other)
    db.session.commit()
    rules = {r.rule for r in app.url_map.iter_rules() if r.rule.startswith("/staff/lottery/")}
    assert {f"/staff/lottery/<int:round_id>{p}" for p in ROUND_ROUTES + ROUND_POSTS} <= rules

    login_as(make_user("elsewhere@example.com", role=Role.STAFF, buildings=[other]))
    for path in ROUND_ROUTES:
        assert client.get(f"/staff/lottery/{round_id}{path}").status_code == 404, path
    for path in ROUND_POSTS:
        assert client.post(f"/staff/lottery/{round_id}{path}", data={"open-confirm": "y"}).status_code == 404, path
    assert client.get(f"/staff/lottery/rules/{hall.id}").status_code == 404
    listing = client.get("/staff/lottery/")
    assert listing.status_code == 200 and "ホール" not in page(listing)
    assert round_of(round_id).state == RoundState.DRAFT

    for role in (Role.FINANCE, Role.RESIDENT):
        login_as(make_user(role=role))
        assert client.get("/staff/lottery/").status_code == 403
        assert client.get(f"/staff/lottery/{round_id}/").status_code == 403
        assert client.post(f"/staff/lottery/{round_id}/open", data={"open-confirm": "y"}).status_code == 403
    assert round_of(round_id).state == RoundState.DRAFT


def test_a_round_with_one_room_outside_the_staff_members_buildings_is_not_theirs(
        app, client, login_as, make_user, hall, staff):
    other = Building(name="別の会館", name_kana="ベツノカイカン", name_en="Other Hall")
    db.session.add(other)
    db.session.flush()
    green_room = Room(building=other, name="控室", kind="other", letting="division")
    db.session.add(green_room)
    db.session.commit()
    shared = rounds.create_round([hall, green_room], MONTH, staff=staff)
    db.session.commit()

    assert client.get(f"/staff/lottery/{shared.id}/").status_code == 404
    assert "ホール 2027-06" not in page(client.get("/staff/lottery/"))
    login_as(make_user("admin@example.com", role=Role.ADMIN))
    assert client.get(f"/staff/lottery/{shared.id}/").status_code == 200
    assert "ホール 2027-06" in page(client.get("/staff/lottery/"))


# -- making and changing rounds --------------------------------------------------------------------------

def test_the_new_round_form_is_filled_in_from_the_rooms_rule(client, english, hall, staff):
    first = client.get("/staff/lottery/new")
    assert first.status_code == 200 and 'name="month"' in page(first)

    shown = page(client.get(f"/staff/lottery/new?room={hall.id}&month=2027-06"))
    for value in ('value="2027-03-01T00:00"', 'value="2027-04-01T00:00"', 'value="2027-04-10"',
                  'value="2027-04-11T09:00"', 'value="2027-04-11T12:00"', 'value="2027-04-20"',
                  'value="2027-04-21T09:00"'):
        assert value in shown, value

    db.session.add(LotteryRule(room_id=hall.id, months_ahead=1, tier_months={"2": 1}, apply_from_day=5,
                               apply_until_day=12, draw_day=13, publish_day=14, pay_by_day=18, release_day=19,
                               release_time=time(10, 0), max_applications=4, max_koma_per_choice=2,
                               pay_days_before=5))
    db.session.commit()
    shown = page(client.get(f"/staff/lottery/new?room={hall.id}&month=2027-06"))
    for value in ('value="2027-05-05T00:00"', 'value="2027-05-12"', 'value="2027-05-13T09:00"',
                  'value="2027-05-19T10:00"'):
        assert value in shown, value
    assert re.search(r'<input [^>]*name="max_applications"[^>]*value="4"', shown)
    assert 'id="tier_1_from" name="tier_1_from" type="datetime-local" value=""' in shown


def test_a_round_is_made_with_staffs_overrides_and_a_second_for_the_room_and_month_is_refused(
        client, english, hall, make_room, staff):
    green_room = make_room("控室")
    response = client.post("/staff/lottery/new", data=round_fields(
        hall, with_rooms=[str(green_room.id)], title="ホール 6月", tier_1_from="", tier_2_from="2027-04-02T10:00",
        apply_until="2027-04-09", draw_at="2027-04-12T15:30", publish_at="2027-04-13T09:00", pay_by="2027-04-19",
        release_at="2027-04-22T09:00", max_applications="5", max_wins="2", max_holiday_wins="0"))
    assert response.status_code == 303
    round_ = db.session.scalar(select(LotteryRound))
    assert response.headers["Location"] == f"/staff/lottery/{round_.id}/"
    assert (round_.state, round_.title, round_.target_month, round_.room_ids) == (
        RoundState.DRAFT, "ホール 6月", MONTH, [hall.id, green_room.id])
    assert round_.tier_windows == {"2": JST(date(2027, 4, 2), 10).isoformat()}  # tier 1 left empty: may not apply
    assert round_.apply_from == JST(date(2027, 4, 2), 10)
    assert round_.apply_until == datetime(2027, 4, 9, 14, 59, 59, 999999, tzinfo=UTC)  # 23:59:59.999999 JST
    assert round_.draw_at == JST(date(2027, 4, 12), 15, 30)
    assert round_.pay_by == JST(date(2027, 4, 19), 23, 59) + LAST_INSTANT_OF_THE_MINUTE
    assert (round_.max_applications, round_.max_wins, round_.max_holiday_wins, round_.max_koma_total) == (
        5, 2, 0, None)
    assert audit_actions("lottery_round", round_.id) == [("created", "")]

    again = client.post("/staff/lottery/new", data=round_fields(hall))
    assert again.status_code == 422
    assert "One of these rooms already has a lottery round for that month." in page(again)
    assert 'value="2027-04-11T09:00"' in page(again)  # what was typed is kept
    also = client.post("/staff/lottery/new", data=round_fields(green_room))  # the 控室 is taken too
    assert also.status_code == 422 and "already has a lottery round" in page(also)
    assert count(LotteryRound) == 1


def test_dates_out_of_order_are_refused_with_the_services_message(client, english, hall, staff):
    response = client.post("/staff/lottery/new", data=round_fields(hall, draw_at="2027-04-10T09:00"))
    assert response.status_code == 422
    assert "The dates must follow each other" in page(response)
    assert count(LotteryRound) == 0


@pytest.mark.parametrize("changes, field, message", [
    ({"draw_at": "2027-04-31T09:00"}, "draw_at", "Enter a date and a time like 2027-04-01 09:00."),
    ({"draw_at": "tomorrow"}, "draw_at", "Enter a date and a time like 2027-04-01 09:00."),
    ({"apply_until": "2027/04/10x"}, "apply_until", "Enter a real date as YYYY-MM-DD"),
    ({"pay_by": ""}, "pay_by", "Enter the date."),
    ({"release_at": "0001-01-01T00:00"}, "release_at", "Enter a date and a time like 2027-04-01 09:00."),
    ({"month": "2027-13"}, "month", "Enter a month as YYYY-MM"),
    ({"max_applications": "-1"}, "max_applications", "Enter a number from 1 to 100."),
    ({"max_weekday_wins": "-3"}, "max_weekday_wins", "Enter a number from 0 to 100."),
    ({"pay_days_before": "three"}, "pay_days_before", "Enter a whole number"),
    ({"tier_1_from": "", "tier_2_from": ""}, "tier_1_from", "Say from when at least one tier may apply."),
    ({"room": "999999"}, "room", "Choose a room of the list."),
])
def test_bad_input_on_a_new_round_gets_form_errors(client, english, hall, staff, changes, field, message):
    response = client.post("/staff/lottery/new", data=round_fields(hall, **changes))
    assert response.status_code == 422
    assert message in page(response)
    assert f'href="#{field}"' in page(response)
    assert count(LotteryRound) == 0


def test_a_round_changes_only_while_draft_or_open(client, english, hall, staff):
    round_id = draft_round(hall.id, staff.id)
    assert client.get(f"/staff/lottery/{round_id}/edit").status_code == 200
    fields = {k: v for k, v in round_fields(hall).items() if k not in ("room", "month")}
    assert client.post(f"/staff/lottery/{round_id}/edit", data={**fields, "max_applications": "7"}).status_code == 303
    assert round_of(round_id).max_applications == 7

    rounds.open_round(round_of(round_id), staff=staff)
    db.session.commit()
    assert client.post(f"/staff/lottery/{round_id}/edit", data={**fields, "max_applications": "6",
                                                                 "tier_1_from": ""}).status_code == 303
    assert (round_of(round_id).max_applications, round_of(round_id).tier_windows.keys()) == (6, {"2"})
    bad = client.post(f"/staff/lottery/{round_id}/edit", data={**fields, "max_koma_per_choice": "0"})
    assert bad.status_code == 422 and "Enter a number from 1 to 20." in page(bad)

    rounds.freeze(round_of(round_id), now=CLOSE + timedelta(seconds=1))
    db.session.commit()
    shown = client.get(f"/staff/lottery/{round_id}/edit", follow_redirects=True)
    assert "The round is closed: its dates and caps can no longer change." in page(shown)
    refused = client.post(f"/staff/lottery/{round_id}/edit", data={**fields, "max_applications": "9"})
    assert refused.status_code == 303
    assert round_of(round_id).max_applications == 6
    assert [a for a, _ in audit_actions("lottery_round", round_id)] == [
        "created", "changed", "draft->open", "changed", "open->closed"]


# -- the standing rule ------------------------------------------------------------------------------------

RULE = {"months_ahead": "2", "tier_1_months": "3", "tier_2_months": "2", "apply_from_day": "1",
        "apply_until_day": "10", "draw_day": "11", "publish_day": "11", "pay_by_day": "20", "release_day": "21",
        "release_time": "09:00", "max_applications": "10", "max_koma_per_choice": "3", "max_koma_total": "",
        "max_wins": "3", "max_weekday_wins": "", "max_holiday_wins": "", "pay_days_before": "3"}


def test_a_rooms_rule_is_made_on_first_save_then_changed_and_audited(client, english, hall, staff):
    shown = client.get(f"/staff/lottery/rules/{hall.id}")
    assert shown.status_code == 200 and "no rule of its own yet" in page(shown)
    assert db.session.get(LotteryRule, hall.id) is None

    assert client.post(f"/staff/lottery/rules/{hall.id}", data=RULE).status_code == 303
    rule = db.session.get(LotteryRule, hall.id)
    assert (rule.tier_months, rule.max_wins, rule.release_time) == ({"1": 3, "2": 2}, 3, time(9, 0))
    assert client.post(f"/staff/lottery/rules/{hall.id}", data=RULE).status_code == 303  # nothing changed
    assert client.post(f"/staff/lottery/rules/{hall.id}",
                       data={**RULE, "tier_1_months": "", "draw_day": "12", "publish_day": "12",
                             "release_time": "10:30"}).status_code == 303
    db.session.expire_all()
    rule = db.session.get(LotteryRule, hall.id)
    assert (rule.tier_months, rule.draw_day, rule.release_time) == ({"2": 2}, 12, time(10, 30))
    entries = audit_actions("lottery_rule", hall.id)
    assert [a for a, _ in entries] == ["created", "changed"]

    made = rounds.create_round([hall], MONTH, staff=staff)  # the next round takes it
    assert made.draw_at == JST(date(2027, 4, 12), 9) and made.tier_windows.keys() == {"2"}


@pytest.mark.parametrize("changes, message", [
    ({"max_applications": "-2"}, "Enter a number from 1 to 100."),
    ({"apply_until_day": "0"}, "Enter a number from 1 to 28."),
    ({"draw_day": "9"}, "This day cannot come before the one above it."),
    ({"tier_1_months": "", "tier_2_months": ""}, "Say how early at least one tier may apply."),
    ({"tier_2_months": "1"}, "A tier starts applying in the round's month or earlier: at least 2."),
    ({"release_time": "25:00"}, "Not a valid time value."),
    # Allowed by each field, but the close (23:59:59) would not come before the draw at 09:00 the same day.
    ({"draw_day": "10"}, "The dates must follow each other"),
])
def test_a_bad_rule_gets_form_errors_and_saves_nothing(client, english, hall, staff, changes, message):
    response = client.post(f"/staff/lottery/rules/{hall.id}", data={**RULE, **changes})
    assert response.status_code == 422
    assert message in page(response)
    assert db.session.get(LotteryRule, hall.id) is None


# -- every step through the pages ----------------------------------------------------------------------

def step(client, round_id: int, name: str, **data):
    prefix = {"public-value": "value"}.get(name, name)
    return client.post(f"/staff/lottery/{round_id}/{name}",
                       data={f"{prefix}-{k}": v for k, v in {"confirm": "y", **data}.items()})


def test_a_round_from_opening_to_a_cancelled_win_through_its_pages(app, client, english, hall, staff, make_user):
    def travel(moment):
        return signed_in_at(moment, client, staff)

    with travel(JST(date(2027, 3, 20), 10)):
        assert client.post("/staff/lottery/new", data=round_fields(hall)).status_code == 303
        round_id = db.session.scalar(select(LotteryRound.id))
        unconfirmed = client.post(f"/staff/lottery/{round_id}/open", data={})
        assert unconfirmed.status_code == 422 and "Tick the box to confirm." in page(unconfirmed)
        assert round_of(round_id).state == RoundState.DRAFT
        assert step(client, round_id, "open").status_code == 303
        assert round_of(round_id).state == RoundState.OPEN

    hanako, taro = make_user(name="山田 花子"), make_user(name="佐藤 太郎")
    with travel(JST(date(2027, 4, 5), 12)):
        for user in (hanako, taro):
            applications.apply(round_of(round_id), user, day=DAY, parts=[applications.Part(hall.id, ("AFTERNOON",))],
                               now=JST(date(2027, 4, 5), 12))
        db.session.commit()

    with travel(CLOSE):  # the last instant of the closing day: still open
        shown = page(client.get(f"/staff/lottery/{round_id}/"))
        assert "Applications are taken until" in shown and f'action="/staff/lottery/{round_id}/close"' not in shown
        early = step(client, round_id, "close")
        assert early.status_code == 422
        assert "Applications are still open until the end of the closing day." in page(early)

    with travel(JST(date(2027, 4, 11), 0, 0, 1)):
        assert step(client, round_id, "close").status_code == 303
        closed = round_of(round_id)
        assert closed.state == RoundState.CLOSED and closed.manifest_hash and closed.commitment
        assert step(client, round_id, "edit").status_code == 303  # no longer editable: back to the round
        assert "Fix the public value now, after the close" in page(client.get(f"/staff/lottery/{round_id}/"))
        no_value = step(client, round_id, "public-value", value=" ", source="宝くじ")
        assert no_value.status_code == 422 and "Enter the public value." in page(no_value)

    with travel(JST(date(2027, 4, 11), 8, 30)):
        assert step(client, round_id, "public-value", value="123456",
                    source="宝くじ 第1000回 2027-04-11").status_code == 303
        assert round_of(round_id).public_value == "123456"
        too_early = step(client, round_id, "draw")
        assert too_early.status_code == 422 and "It is not yet time for this step of the round." in page(too_early)

    with travel(JST(date(2027, 4, 11), 9)):
        assert step(client, round_id, "draw").status_code == 303
        assert round_of(round_id).state == RoundState.DRAWN
        assert "Verified" in page(client.get(f"/staff/lottery/{round_id}/"))

    with travel(JST(date(2027, 4, 11), 12)):
        assert step(client, round_id, "publish").status_code == 303
    published = round_of(round_id)
    assert published.state == RoundState.PUBLISHED
    won = db.session.scalar(select(LotteryApplication).where(LotteryApplication.outcome == Outcome.WON))
    winner = won.party.user
    booking = rounds.win_bookings(won)[0]
    assert booking.state == BookingState.CONFIRMED  # payments are off in tests: the win is confirmed at once
    told = [m for m in outbox(app) if m["To"] in (hanako.email, taro.email)]
    assert {m["To"] for m in told} == {hanako.email, taro.email}  # both parties are told

    with travel(JST(date(2027, 4, 12), 10)):
        shown = page(client.get(f"/staff/lottery/{round_id}/"))
        assert "Verified: the stored inputs reproduce the published result" in shown
        assert f"Booking {booking.id}" in shown and winner.name in shown
        no_reason = client.post(f"/staff/lottery/{round_id}/cancel-win",
                                data={"application": won.id, f"win{won.id}-confirm": "y"})
        assert no_reason.status_code == 422 and "Give the reason for cancelling the win" in page(no_reason)
        cancelled = client.post(f"/staff/lottery/{round_id}/cancel-win", data={
            "application": won.id, f"win{won.id}-reason": "会場の設備故障のため", f"win{won.id}-confirm": "y"})
        assert cancelled.status_code == 303

    db.session.expire_all()
    won = db.session.get(LotteryApplication, won.id)
    assert (won.outcome, won.outcome_reason) == (Outcome.CANCELLED, "会場の設備故障のため")
    assert db.session.get(Booking, booking.id).state == BookingState.CANCELLED
    assert [a for a, _ in audit_actions("lottery_round", round_id)] == [
        "created", "draft->open", "open->closed", "public value fixed", "closed->drawn", "drawn->published"]
    assert ("win cancelled", "会場の設備故障のため") in audit_actions("lottery_application", won.id)

    with travel(JST(date(2027, 4, 12), 11)):
        history = page(client.get(f"/staff/lottery/{round_id}/"))
    trail = history[history.index('id="history-title"'):]
    for label in ("Lottery round made (draft)", "Lottery round opened for applications",
                  "Lottery application filed", "Applications closed and frozen", "Public value fixed", "Draw run",
                  "Results published; wins let as bookings", "Win cancelled by staff"):
        assert label in trail, label
    assert trail.index("Lottery round made") < trail.index("Draw run") < trail.index("Win cancelled by staff")
    assert "会場の設備故障のため" in trail and "抽選 係" in trail
    # Once cancelled, the win has no form any more.
    assert f'name="win{won.id}-reason"' not in history


def test_a_published_round_shows_its_wins_and_bookings_waiting_for_payment(
        app, client, english, hall, staff, make_user):
    app.config["PAYMENTS_ENABLED"] = True
    users = [make_user(name="山田 花子").id, make_user(name="佐藤 太郎").id]
    round_id = published_round(hall.id, staff.id, users)
    shown = page(client.get(f"/staff/lottery/{round_id}/"))
    assert "Published: winners paying" in shown
    assert re.search(r"Waiting for payment until [^<]*2027", shown)
    assert "Secret (revealed at publication)" in shown and round_of(round_id).secret in shown


# -- the applications ---------------------------------------------------------------------------------

def test_the_applications_are_listed_and_filtered(client, english, hall, make_room, staff, make_user):
    green_room = make_room("控室")
    round_ = rounds.create_round([hall, green_room], MONTH, staff=staff)
    rounds.open_round(round_, staff=staff)
    hanako, taro = make_user(name="山田 花子", name_kana="ヤマダ ハナコ"), make_user(name="佐藤 太郎")
    group = Group(name="合唱団さくら", representative_id=taro.id, member_count=5, resident_count=5, status="active",
                  valid_until=date(2028, 3, 31))
    db.session.add(group)
    db.session.flush()
    at = JST(date(2027, 4, 2), 10)
    bundle = applications.apply(round_, hanako, day=DAY, now=at, parts=[
        applications.Part(hall.id, ("AFTERNOON",)), applications.Part(green_room.id, ("AFTERNOON",))])
    applications.apply(round_, taro, day=date(2027, 6, 8), group=group, now=at,
                       parts=[applications.Part(hall.id, ("MORNING",))])
    gone = applications.apply(round_, hanako, day=date(2027, 6, 9), now=at, parts=[
        applications.Part(green_room.id, ("EVENING",))])
    applications.withdraw(gone, actor=hanako, now=at)
    db.session.commit()
    url = f"/staff/lottery/{round_.id}/applications"

    def names(**query) -> list[str]:
        response = client.get(url, query_string=query)
        assert response.status_code == 200, page(response)
        return [n for n in ("山田 花子", "合唱団さくら") if n in page(response)]

    assert names() == ["山田 花子", "合唱団さくら"]
    assert names(kind="group") == ["合唱団さくら"] and names(kind="person") == ["山田 花子"]
    assert names(q="ヤマダ") == ["山田 花子"] and names(q="さくら") == ["合唱団さくら"] and names(q="%") == []
    assert names(room=str(green_room.id)) == ["山田 花子"]
    assert names(day="2027-06-08") == ["合唱団さくら"]
    assert names(outcome="none") == ["山田 花子", "合唱団さくら"] and names(outcome="won") == []
    shown = page(client.get(url))
    assert "Tier 1: resident groups" in shown and bundle.party.pseudonym in shown
    withdrawn = page(client.get(url, query_string={"status": "withdrawn"}))
    assert "Withdrawn" in withdrawn and "合唱団さくら" not in withdrawn

    bad = client.get(url, query_string={"day": "2027-02-30", "outcome": "nonsense"})
    assert bad.status_code == 422 and "Enter a real date as YYYY-MM-DD" in page(bad)

    csv = client.get(url, query_string={"format": "csv", "kind": "person"})
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    text = csv.get_data().decode("utf-8-sig")
    assert "山田 花子" in text and "合唱団さくら" not in text and "Music room 2027-06-07 Afternoon + " in text


# -- the counter ------------------------------------------------------------------------------------

def test_staff_apply_for_a_resident_at_the_counter_as_themselves_or_for_their_group(
        client, english, hall, make_room, staff, make_user):
    def travel(moment):
        return signed_in_at(moment, client, staff)

    green_room = make_room("控室")
    round_ = rounds.create_round([hall, green_room], MONTH, staff=staff)
    rounds.open_round(round_, staff=staff)
    resident = make_user("hanako@example.com", name="山田 花子", name_kana="ヤマダ ハナコ", phone="03-1111-2222")
    group = Group(name="合唱団さくら", representative_id=resident.id, member_count=5, resident_count=5,
                  status="active", valid_until=date(2028, 3, 31))
    db.session.add(group)
    db.session.commit()
    url = f"/staff/lottery/{round_.id}/apply"

    with travel(JST(date(2027, 3, 15), 10)):  # resident groups apply from 1 March, everyone else from 1 April
        found = page(client.get(url, query_string={"q": "ヤマダ"}))
        assert "hanako@example.com" in found and f"user_id={resident.id}" in found
        form = page(client.get(url, query_string={"user_id": resident.id}))
        assert "For the group 合唱団さくら (Tier 1: resident groups)" in form

        too_early = client.post(f"{url}?user_id={resident.id}", data={
            "party": "self", "day": DAY.isoformat(), f"divisions_{hall.id}": ["MORNING"]})
        assert too_early.status_code == 422
        assert "This round is not taking applications from you now." in page(too_early)
        assert f'value="{DAY.isoformat()}"' in page(too_early)  # the input is kept

        wrong_month = client.post(f"{url}?user_id={resident.id}", data={
            "party": str(group.id), "day": "2027-07-05", f"divisions_{hall.id}": ["MORNING"]})
        assert wrong_month.status_code == 422 and "Choose a day in the month this round lets." in page(wrong_month)

        filed = client.post(f"{url}?user_id={resident.id}", data={
            "party": str(group.id), "day": DAY.isoformat(), "rank": "2",
            f"divisions_{hall.id}": ["AFTERNOON"], f"divisions_{green_room.id}": ["AFTERNOON"]})
        assert filed.status_code == 303
        assert filed.headers["Location"] == f"{url}?user_id={resident.id}"

    application = db.session.scalar(select(LotteryApplication))
    assert (application.channel, application.filed_by_id, application.rank, application.party.group_id) == (
        "counter", staff.id, 2, group.id)
    assert sorted((s.room_id, s.division_codes) for s in application.slots) == [
        (hall.id, "AFTERNOON"), (green_room.id, "AFTERNOON")]
    assert ("filed", "") in audit_actions("lottery_application", application.id)

    with travel(JST(date(2027, 4, 2), 10)):
        shown = page(client.get(url, query_string={"user_id": resident.id}))
        assert "Already filed in this round" in shown and "choice 2" in shown
        same_slot = client.post(f"{url}?user_id={resident.id}", data={
            "party": "self", "day": DAY.isoformat(), f"divisions_{hall.id}": ["AFTERNOON"]})
        assert same_slot.status_code == 422
        assert "One person applies once for a slot." in page(same_slot)
        nothing = client.post(f"{url}?user_id={resident.id}", data={"party": "self", "day": DAY.isoformat()})
        assert nothing.status_code == 422 and "Choose at least one room and division." in page(nothing)
        bad = client.post(f"{url}?user_id={resident.id}", data={"party": "self", "day": "2027-06-31", "rank": "-1"})
        assert bad.status_code == 422
        assert "Enter a real date as YYYY-MM-DD" in page(bad) and "Enter a number from 1 to 100." in page(bad)
        nobody = client.post(url, data={"party": "self"})
        assert nobody.status_code == 422 and "Find the resident first" in page(nobody)
    assert count(LotteryApplication) == 1


def test_the_round_list_filters_by_state_and_month(client, english, hall, make_room, staff):
    open_round(hall.id, staff.id)
    draft_round(make_room("和室").id, staff.id, date(2027, 7, 1))
    listing = page(client.get("/staff/lottery/"))
    assert "ホール 2027-06" in listing and "和室 2027-07" in listing
    only_open = page(client.get("/staff/lottery/", query_string={"state": "open"}))
    assert "ホール 2027-06" in only_open and "和室 2027-07" not in only_open
    july = page(client.get("/staff/lottery/", query_string={"month": "2027-07"}))
    assert "ホール 2027-06" not in july and "和室 2027-07" in july
    bad = client.get("/staff/lottery/", query_string={"month": "2027-99", "state": "nope"})
    assert bad.status_code == 422
