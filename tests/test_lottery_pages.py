"""The resident's lottery pages: the list and a round's page (drafts hidden, the secret only once published),
applying through the page (as oneself, for a group, a bundle of two rooms; a refusal keeps the input and stores
nothing), changing and withdrawing from My bookings (nobody else's), My bookings' lottery section, and the
calendars that show a day let by lottery (a first-come reserve of it is refused).

Each round lets a month three months after the real one; the pages run under a frozen clock (time_machine), and
the session is made inside it (a cookie signed at the real time would be too old at the frozen one).
"""
import json
import re
from contextlib import contextmanager
from datetime import time, timedelta

import pytest
import time_machine
from sqlalchemy import func, select

from reservations.extensions import db
from reservations.models import (
    ExemptionKind,
    Group,
    GroupMember,
    GroupStatus,
    LotteryApplication,
    LotteryParty,
    Outcome,
    Role,
    RoundState,
)
from reservations.services.deadline import LAST_INSTANT_OF_THE_MINUTE
from reservations.services.groups import identity_key
from reservations.services.lottery import rounds
from reservations.services.lottery.applications import Part, apply
from reservations.services.lottery.draw import verify
from reservations.services.lottery.rounds import LAST_INSTANT_OF_THE_DAY
from reservations.timeutil import at_tokyo, business_date, now_utc, shift_months
from tests.conftest import weekday_on_or_after
from tests.helpers import statements

MONTH = shift_months(business_date(now_utc()).replace(day=1), 3)  # the month let
BASE = shift_months(MONTH, -2)  # the month the round runs in
TIER_1_OPENS = at_tokyo(shift_months(MONTH, -3), time(0))  # resident groups, a month before everyone else
TIER_2_OPENS = at_tokyo(BASE, time(0))
EARLY = at_tokyo(shift_months(MONTH, -3).replace(day=20), time(12))  # only tier 1 may apply
APPLYING = at_tokyo(BASE.replace(day=5), time(12))
CLOSE = at_tokyo(BASE.replace(day=10), time(0)) + LAST_INSTANT_OF_THE_DAY
COMMITTED = CLOSE + timedelta(minutes=1)
FIXED = COMMITTED + timedelta(hours=1)
DRAW = at_tokyo(BASE.replace(day=11), time(9))
PUBLISH = at_tokyo(BASE.replace(day=11), time(12))
AFTER_PUBLISH = PUBLISH + timedelta(hours=1)
PAY_BY = at_tokyo(BASE.replace(day=20), time(23, 59)) + LAST_INSTANT_OF_THE_MINUTE
RELEASE = at_tokyo(BASE.replace(day=21), time(9))
DAY = weekday_on_or_after(MONTH.replace(day=8), 1)  # a Tuesday of the month let
NEXT_DAY = DAY + timedelta(days=1)
PUBLIC_VALUE = "2027 宝くじ 第1等 123456"


@pytest.fixture
def app_config(app_config):
    # A win is a booking paid online by its deadline (its payment is opened at publication; no provider call).
    return {**app_config, "PAYMENTS_ENABLED": True}


@pytest.fixture
def staff(make_user):
    return make_user("staff@example.com", role=Role.STAFF)


@pytest.fixture
def neighbour(make_user):
    return make_user("neighbour@example.com", name="隣 太郎")


def make_round(rooms, staff, *, month=MONTH, opened=True, title="", **overrides):
    values = dict(tier_windows={1: TIER_1_OPENS, 2: TIER_2_OPENS}, apply_until=CLOSE, draw_at=DRAW,
                  publish_at=PUBLISH, pay_by=PAY_BY, release_at=RELEASE)
    values.update(overrides)
    round_ = rounds.create_round(rooms, month, staff=staff, now=TIER_1_OPENS - timedelta(days=10), title=title,
                                 overrides=values)
    if opened:
        rounds.open_round(round_, staff=staff)
    db.session.commit()
    return round_


def resident_group(user, name="中央合唱団", members=()) -> Group:
    group = Group(name=name, representative_id=user.id, member_count=5, resident_count=5, category="general",
                  status=GroupStatus.ACTIVE, valid_until=MONTH + timedelta(days=400))
    for member in members:
        group.members.append(GroupMember(name=member.name, identity=identity_key(member.name, "", ""),
                                         user_id=member.id))
    db.session.add(group)
    db.session.commit()
    return group


def file(round_, user, room, codes=("AFTERNOON",), *, day=DAY, at=APPLYING, **kw):
    application = apply(round_, user, day=day, parts=[Part(room.id, tuple(codes))], now=at, **kw)
    db.session.commit()
    return application


def close(round_):
    rounds.freeze(round_, now=COMMITTED)
    db.session.commit()


def draw(round_, staff):
    rounds.fix_public_value(round_, PUBLIC_VALUE, "みずほ銀行 宝くじ当せん番号", staff=staff, now=FIXED)
    rounds.run_draw(round_, staff=staff, now=DRAW)
    db.session.commit()


def publish(round_, staff):
    rounds.publish(round_, staff=staff, now=PUBLISH)
    db.session.commit()


@contextmanager
def at(client, moment, user=None, lang="en"):
    """The pages at `moment`, signed in as `user` (or not), in English unless told."""
    with time_machine.travel(moment, tick=False):
        with client.session_transaction() as session:
            session.clear()
            session["lang"] = lang
            if user is not None:
                session["_user_id"] = user.get_id()
                session["_fresh"] = True
        yield


def page(client, url, status=200) -> str:
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code)
    return response.get_data(as_text=True)


def applications_of(user) -> list[LotteryApplication]:
    return db.session.scalars(select(LotteryApplication).join(LotteryParty).where(
        LotteryParty.user_id == user.id, LotteryApplication.withdrawn_at.is_(None))
        .order_by(LotteryApplication.rank)).all()


# -- the list and the round's page -----------------------------------------------------------------------------

def test_the_list_shows_open_rounds_and_published_results_and_never_a_draft(
        app, client, make_room, staff, resident, neighbour):
    hall, studio, gym = make_room("ホール"), make_room("スタジオ"), make_room("体育室")
    published = make_round([hall], staff, title="ホール 抽選")
    file(published, resident, hall)
    close(published)
    draw(published, staff)
    publish(published, staff)
    coming = make_round([studio], staff, month=shift_months(MONTH, 1), title="スタジオ 抽選",
                        tier_windows={2: AFTER_PUBLISH - timedelta(days=1)},
                        apply_until=AFTER_PUBLISH + timedelta(days=5), draw_at=AFTER_PUBLISH + timedelta(days=6),
                        publish_at=AFTER_PUBLISH + timedelta(days=6), pay_by=AFTER_PUBLISH + timedelta(days=15),
                        release_at=AFTER_PUBLISH + timedelta(days=16))
    draft = make_round([gym], staff, title="体育室 下書き", opened=False)

    with at(client, AFTER_PUBLISH):
        html = page(client, "/lottery/")
        assert "ホール 抽選" in html and "スタジオ 抽選" in html and "体育室 下書き" not in html
        current, results = html.split('id="results-title"')
        assert "スタジオ 抽選" in current and "ホール 抽選" in results
        assert "Taking applications until" in current
        assert "Tier 2: everyone else" in current
        page(client, f"/lottery/{draft.key}/", 404)
        page(client, f"/lottery/{draft.key}/apply", 302)  # signed out: log in first
        page(client, f"/lottery/{coming.key}/")
        page(client, "/lottery/no-such-round/", 404)
    with at(client, AFTER_PUBLISH, resident):
        page(client, f"/lottery/{draft.key}/apply", 404)
        assert 'href="/lottery/"' in page(client, "/")  # the main navigation links to the list


def test_the_round_page_shows_the_commitment_at_the_close_and_the_secret_only_once_published(
        app, client, room, staff, resident, neighbour):
    round_ = make_round([room], staff, max_applications=4, max_wins=2)
    file(round_, resident, room)
    file(round_, neighbour, room)
    url = f"/lottery/{round_.key}/"

    with at(client, APPLYING):
        html = page(client, url)
        assert "Up to 4 ranked choices" in html and "At most 2 wins" in html
        assert "reservations-lottery/1" in html and "Published here at the close" in html
        assert "2 applications" in html and "How the draw works" in html
        page(client, f"/lottery/{round_.key}/publication.json", 404)

    close(round_)
    with at(client, COMMITTED + timedelta(minutes=5)):
        html = page(client, url)
        assert round_.manifest_hash in html and round_.commitment in html
        assert round_.secret not in html and PUBLIC_VALUE not in html
        page(client, f"/lottery/{round_.key}/publication.json", 404)

    draw(round_, staff)
    assert round_.state == RoundState.DRAWN and round_.publication["secret"] == round_.secret
    with at(client, DRAW + timedelta(minutes=5), resident):
        html = page(client, url)
        assert PUBLIC_VALUE in html and "みずほ銀行" in html
        assert round_.secret not in html and round_.result_hash not in html  # drawn, not yet published
        assert "Your position in the draw" not in html
        page(client, f"/lottery/{round_.key}/publication.json", 404)

    publish(round_, staff)
    mine = db.session.scalar(select(LotteryParty).where(LotteryParty.user_id == resident.id))
    other = db.session.scalar(select(LotteryParty).where(LotteryParty.user_id == neighbour.id))
    with at(client, AFTER_PUBLISH, resident):
        html = page(client, url)
        assert round_.secret in html and round_.result_hash in html
        assert f"flask lottery verify {round_.key}" in html
        assert resident.name not in html and neighbour.name not in html  # pseudonyms only
        yours = re.search(r'<tr class="yours">(.*?)</tr>', html, re.S).group(1)
        assert mine.pseudonym in yours and other.pseudonym not in yours
        assert re.search(rf'class="position">{mine.position}<', html)
        response = client.get(f"/lottery/{round_.key}/publication.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert "attachment" in response.headers["Content-Disposition"]
    published = json.loads(response.get_data())
    assert published["secret"] == round_.secret and verify(published) == []
    with at(client, AFTER_PUBLISH, neighbour):
        html = page(client, url)
        assert re.search(r'<tr class="yours">(.*?)</tr>', html, re.S).group(1).count(other.pseudonym) == 1


# -- applying through the page -----------------------------------------------------------------------------------

def test_a_resident_applies_as_themselves_with_an_exemption_and_the_next_free_rank(app, client, room, staff,
                                                                                   resident):
    round_ = make_round([room], staff, max_applications=3)
    kind = ExemptionKind(code="WELFARE50", name_ja="福祉減免", name_en="Welfare", rate_pct=50,
                         legal_ground="条例第10条第2号", eligible="individual", needs_approval=False)
    db.session.add(kind)
    db.session.commit()

    with at(client, APPLYING, resident):
        html = page(client, f"/lottery/{round_.key}/apply")
        assert f'name="slots" value="{room.id}:MORNING"' in html and "3 of 3" in html and "Welfare (50%)" in html
        response = client.post(f"/lottery/{round_.key}/apply", data={
            "apply_as": "", "day": DAY.isoformat(), "slots": [f"{room.id}:MORNING", f"{room.id}:AFTERNOON"],
            "rank": "", "exemption": str(kind.id), "exemption_note": "福祉の会の例会"})
        assert response.status_code == 302 and response.headers["Location"].endswith(f"/lottery/{round_.key}/apply")
        client.post(f"/lottery/{round_.key}/apply", data={"day": NEXT_DAY.isoformat(), "slots": f"{room.id}:EVENING"})
        html = page(client, f"/lottery/{round_.key}/apply")
        assert "1 of 3" in html

    first, second = applications_of(resident)
    assert (first.rank, first.koma, first.slots[0].division_codes, first.channel) == (1, 2, "MORNING,AFTERNOON",
                                                                                      "online")
    assert (first.exemption_kind_id, first.exemption_note) == (kind.id, "福祉の会の例会")
    assert (second.rank, second.slots[0].day, first.party.group_id, first.party.tier) == (2, NEXT_DAY, None, 2)


def test_a_member_applies_for_their_group_in_its_earlier_window_with_a_bundle_of_two_rooms(
        app, client, make_room, staff, resident):
    hall, green_room = make_room("ホール"), make_room("控室")
    round_ = make_round([hall, green_room], staff)
    group = resident_group(resident)

    with at(client, EARLY, resident):
        html = page(client, f"/lottery/{round_.key}/apply")
        assert "中央合唱団" in html and "Tier 1: registered groups of residents" in html
        response = client.post(f"/lottery/{round_.key}/apply", data={
            "apply_as": str(group.id), "day": DAY.isoformat(),
            "slots": [f"{green_room.id}:AFTERNOON", f"{hall.id}:AFTERNOON"]})
        assert response.status_code == 302
        # Everyone else's window has not opened yet: as themselves they are refused, and told so.
        refused = client.post(f"/lottery/{round_.key}/apply", data={
            "apply_as": "", "day": DAY.isoformat(), "slots": f"{hall.id}:MORNING"})
        assert refused.status_code == 422
        assert "This round is not taking applications from you now." in refused.get_data(as_text=True)

    [bundle] = db.session.scalars(select(LotteryApplication)).all()
    assert (bundle.party.group_id, bundle.party.tier, bundle.koma) == (group.id, 1, 2)
    assert sorted(s.room_id for s in bundle.slots) == sorted([hall.id, green_room.id])
    assert {s.day for s in bundle.slots} == {DAY}


def test_a_refused_choice_is_shown_with_its_message_keeps_the_input_and_stores_nothing(
        app, client, room, staff, resident):
    round_ = make_round([room], staff, max_applications=5)
    choices = [(DAY, c) for c in ("MORNING", "AFTERNOON", "EVENING")] + [(NEXT_DAY, c) for c in ("MORNING",
                                                                                                 "AFTERNOON")]
    for day, code in choices:
        file(round_, resident, room, (code,), day=day)
    sixth = {"day": NEXT_DAY.isoformat(), "slots": f"{room.id}:EVENING", "rank": "4"}

    with at(client, APPLYING, resident):
        response = client.post(f"/lottery/{round_.key}/apply", data=sixth)
        html = response.get_data(as_text=True)
        assert response.status_code == 422
        assert "You have reached the most applications this round allows (5)." in html
        assert f'value="{room.id}:EVENING" id="slot-{room.id}-EVENING" checked' in html
        assert f'value="{NEXT_DAY.isoformat()}"' in html and '<option selected value="4">' in html
        assert "0 of 5" in html

        # Divisions not in a row, a day of another month: each said beside its field, nothing kept.
        gap = client.post(f"/lottery/{round_.key}/apply", data={
            "day": DAY.isoformat(), "slots": [f"{room.id}:MORNING", f"{room.id}:EVENING"]})
        assert gap.status_code == 422
        assert "Choose one division or several consecutive divisions." in gap.get_data(as_text=True)
        elsewhere = client.post(f"/lottery/{round_.key}/apply", data={
            "day": (MONTH - timedelta(days=1)).isoformat(), "slots": f"{room.id}:MORNING"})
        assert "Choose a day in the month this round lets." in elsewhere.get_data(as_text=True)
        empty = client.post(f"/lottery/{round_.key}/apply", data={"day": "", "slots": f"{room.id}:MORNING"})
        assert empty.status_code == 422

    assert db.session.scalar(select(func.count(LotteryApplication.id))) == 5
    assert db.session.scalar(select(func.count(LotteryParty.id))) == 1


def test_applying_needs_a_signed_in_resident_with_a_confirmed_address(app, client, room, staff, make_user):
    round_ = make_round([room], staff)
    unconfirmed = make_user("new@example.com", verified=False)
    choice = {"day": DAY.isoformat(), "slots": f"{room.id}:MORNING"}

    with at(client, APPLYING):
        response = client.post(f"/lottery/{round_.key}/apply", data=choice)
        assert response.status_code == 302 and "/account/login" in response.headers["Location"]
    with at(client, APPLYING, unconfirmed):
        assert "Confirm your email address" in page(client, f"/lottery/{round_.key}/apply")
        refused = client.post(f"/lottery/{round_.key}/apply", data=choice)
        assert refused.status_code == 422
        assert "Please confirm your e-mail address before booking." in refused.get_data(as_text=True)
    assert db.session.scalar(select(func.count(LotteryApplication.id))) == 0


# -- changing and withdrawing, and nobody else's --------------------------------------------------------------

def test_a_resident_changes_a_rank_and_withdraws_until_the_close_and_is_refused_after(
        app, client, room, staff, resident):
    round_ = make_round([room], staff)
    first, second = file(round_, resident, room, ("MORNING",)), file(round_, resident, room, ("EVENING",))

    with at(client, APPLYING, resident):
        response = client.post(f"/lottery/applications/{second.id}/rank", data={"rank": "1"})
        assert response.status_code == 302 and f"#lottery-application-{second.id}" in response.headers["Location"]
        db.session.expire_all()
        assert (first.rank, second.rank) == (2, 1)
        assert client.post(f"/lottery/applications/{first.id}/withdraw").status_code == 302
        db.session.expire_all()
        assert first.withdrawn_at is not None
        bad = client.post(f"/lottery/applications/{second.id}/rank", data={"rank": "zero"}, follow_redirects=True)
        assert "Choose a free rank for this choice." in bad.get_data(as_text=True)

    with at(client, CLOSE + timedelta(seconds=1), resident):
        response = client.post(f"/lottery/applications/{second.id}/withdraw", follow_redirects=True)
        assert "This round is not taking applications from you now." in response.get_data(as_text=True)
        client.post(f"/lottery/applications/{second.id}/rank", data={"rank": "3"})
    db.session.expire_all()
    assert (second.rank, second.withdrawn_at) == (1, None)


def test_another_residents_application_is_not_found_but_a_fellow_member_of_the_group_may_change_it(
        app, client, room, staff, resident, neighbour, make_user):
    member = make_user("member@example.com", name="団員 一郎")
    round_ = make_round([room], staff)
    group = resident_group(resident, members=[member])
    own = file(round_, resident, room, ("MORNING",))
    for_group = file(round_, resident, room, ("EVENING",), group=group)

    with at(client, APPLYING, neighbour):
        for application in (own, for_group):
            assert client.post(f"/lottery/applications/{application.id}/rank", data={"rank": "2"}).status_code == 404
            assert client.post(f"/lottery/applications/{application.id}/withdraw").status_code == 404
        assert client.post("/lottery/applications/99999999999/withdraw").status_code == 404
    with at(client, APPLYING, member):
        assert client.post(f"/lottery/applications/{own.id}/withdraw").status_code == 404
        assert client.post(f"/lottery/applications/{for_group.id}/rank", data={"rank": "2"}).status_code == 302
    with at(client, APPLYING):
        response = client.post(f"/lottery/applications/{own.id}/withdraw")
        assert response.status_code == 302 and "/account/login" in response.headers["Location"]

    db.session.expire_all()
    assert (own.rank, own.withdrawn_at, for_group.rank) == (1, None, 2)


# -- My bookings ---------------------------------------------------------------------------------------------------

def test_my_bookings_lists_the_applications_and_after_publication_the_win_to_pay_and_the_loss_with_its_position(
        app, client, room, staff, resident, neighbour):
    round_ = make_round([room], staff, title="音楽室 六月")
    mine = file(round_, resident, room, ("AFTERNOON",))
    theirs = file(round_, neighbour, room, ("AFTERNOON",))

    with at(client, APPLYING, resident):
        html = page(client, "/bookings")
        assert "Lottery applications" in html and "音楽室 六月" in html
        card = re.search(rf'id="lottery-application-{mine.id}".*?</li>', html, re.S).group(0)
        assert "Filed: you may change or withdraw it until" in card
        assert f'action="/lottery/applications/{mine.id}/rank"' in card
        assert f'action="/lottery/applications/{mine.id}/withdraw"' in card
    with at(client, APPLYING, neighbour):
        assert f"lottery-application-{mine.id}" not in page(client, "/bookings")

    close(round_)
    draw(round_, staff)
    with at(client, DRAW + timedelta(minutes=1), resident):
        html = page(client, "/bookings")
        card = re.search(rf'id="lottery-application-{mine.id}".*?</li>', html, re.S).group(0)
        assert "Waiting for the draw" in card and "/rank" not in card  # drawn, not published: no outcome yet
        assert "Won" not in card and "Not won" not in card

    publish(round_, staff)
    winner, loser = (mine, theirs) if mine.outcome == Outcome.WON else (theirs, mine)
    assert loser.outcome == Outcome.LOST
    [booking] = rounds.win_bookings(winner)
    with at(client, AFTER_PUBLISH, winner.party.user):
        card = re.search(rf'id="lottery-application-{winner.id}".*?</li>', page(client, "/bookings"), re.S).group(0)
        assert "Won: pay by" in card and f'href="/bookings/{booking.id}/pay"' in card
    with at(client, AFTER_PUBLISH, loser.party.user):
        card = re.search(rf'id="lottery-application-{loser.id}".*?</li>', page(client, "/bookings"), re.S).group(0)
        assert f"Not won: your position in the draw was {loser.party.position}" in card
        assert loser.party.position == 2


# -- calendars ---------------------------------------------------------------------------------------------------

def test_the_calendars_show_a_day_let_by_lottery_and_a_first_come_reserve_of_it_is_refused(
        app, client, room, staff, resident):
    round_ = make_round([room], staff)

    with at(client, APPLYING, resident):
        html = page(client, f"/rooms/{room.id}?month={MONTH:%Y-%m}")
        cell = re.search(rf'<td data-date="{DAY.isoformat()}" class="mark-lottery">.*?</td>', html, re.S).group(0)
        assert f'href="/lottery/{round_.key}/"' in cell and "lottery" in cell.lower()
        assert "are let by lottery this month" in html
        day_view = page(client, f"/rooms/{room.id}/days/{DAY.isoformat()}")
        assert "This day is let by lottery" in day_view and "By lottery" in day_view
        assert 'value="MORNING" id="unit-MORNING" disabled' in day_view
        search = page(client, f"/?date={DAY.isoformat()}")
        assert 'class="day-mark mark-lottery"' in search and f'href="/lottery/{round_.key}/"' in search
        assert f'id="room-{room.id}"' not in page(client, f"/?date={DAY.isoformat()}&free_only=y")
        response = client.post(f"/rooms/{room.id}/book", data={"date": DAY.isoformat(), "divisions": "MORNING",
                                                                 "expected_price": "2800"}, follow_redirects=True)
        assert "This day is let by lottery" in response.get_data(as_text=True)
        # The month before is not let by lottery.
        assert "mark-lottery" not in page(client, f"/rooms/{room.id}?month={shift_months(MONTH, -1):%Y-%m}")
        # The month's round is read once for the whole calendar, not once a day or a division.
        with statements() as sent:
            page(client, f"/rooms/{room.id}?month={MONTH:%Y-%m}")
        assert len([s for s in sent if "lottery_rounds" in s]) == 1

    with at(client, RELEASE, resident):  # at release_at the day opens, whether or not the job has run
        assert "mark-lottery" not in page(client, f"/rooms/{room.id}?month={MONTH:%Y-%m}")


def test_a_draft_rounds_days_are_marked_without_a_link_to_its_page(app, client, room, staff):
    make_round([room], staff, opened=False)
    with at(client, APPLYING):
        html = page(client, f"/rooms/{room.id}?month={MONTH:%Y-%m}")
    cell = re.search(rf'<td data-date="{DAY.isoformat()}" class="mark-lottery">.*?</td>', html, re.S).group(0)
    assert "/lottery/" not in cell and "/lottery/" not in html.split('id="calendar-title"')[1].split("</section>")[0]
