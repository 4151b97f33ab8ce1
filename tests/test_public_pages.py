"""The public pages: room search, the room page with its month calendar and a day's slots."""
import re
from datetime import date, time

import pytest

from reservations.extensions import db
from reservations.models import Building, Closure, ClosureKind, RoomEquipment
from reservations.services import booking, rules
from reservations.timeutil import business_date, now_utc
from tests.helpers import booking_day


def book(user, room, day, codes):
    reserved = booking.reserve(user, room, rules.division_slot(room, day, codes))
    db.session.commit()
    return reserved


def card_ids(html: str) -> set[int]:
    return {int(n) for n in re.findall(r'<li class="card" id="room-(\d+)"', html)}


def calendar_cell(html: str, day: date) -> str:
    match = re.search(rf'<td data-date="{day.isoformat()}"[^>]*>(.*?)</td>', html, re.S)
    assert match, f"no calendar cell for {day}"
    return match.group(1)


def mark_on(html: str, day: date) -> str:
    return re.search(r'class="mark[^"]*" aria-hidden="true">([^<]+)</span>', calendar_cell(html, day)).group(1)


# --- search ---------------------------------------------------------------


def test_search_lists_active_rooms_with_their_details(client, english, make_room):
    room = make_room("音楽室A")
    room.name_en = "Music room A"
    hidden = make_room("閉鎖中の部屋", active=False)
    db.session.commit()

    html = client.get("/").get_data(as_text=True)

    assert card_ids(html) == {room.id}
    assert "Music room A" in html and "Test Hall" in html
    assert "30 people" in html and "from ¥2,800 per division" in html
    assert hidden.name not in html


def test_search_filters_by_kind(client, make_room, make_hourly_room):
    music = make_room("音楽室")
    court = make_hourly_room("テニスコート")

    assert card_ids(client.get("/?kind=court").get_data(as_text=True)) == {court.id}
    assert card_ids(client.get("/?kind=music_room").get_data(as_text=True)) == {music.id}
    assert card_ids(client.get("/?kind=").get_data(as_text=True)) == {music.id, court.id}


def test_search_filters_by_minimum_capacity(client, make_room):
    small = make_room("小会議室")
    small.capacity = 10
    large = make_room("大会議室")
    large.capacity = 80
    unknown = make_room("定員不明の部屋")
    unknown.capacity = None
    db.session.commit()

    assert card_ids(client.get("/?capacity=20").get_data(as_text=True)) == {large.id}
    assert card_ids(client.get("/?capacity=10").get_data(as_text=True)) == {small.id, large.id}


def test_search_filters_by_building(client, make_room):
    here = make_room("音楽室")
    other_building = Building(name="別館", name_kana="ベッカン", name_en="Annex")
    there = make_room("別館の音楽室")
    there.building = other_building
    db.session.commit()

    html = client.get(f"/?building={other_building.id}").get_data(as_text=True)

    assert card_ids(html) == {there.id}
    assert card_ids(client.get(f"/?building={here.building_id}").get_data(as_text=True)) == {here.id}


def test_search_filters_by_equipment_all_of_them(client, make_room):
    piano_only = make_room("ピアノ室")
    piano_only.equipment.append(RoomEquipment(code="piano"))
    piano_brass = make_room("ピアノと金管の部屋")
    piano_brass.equipment += [RoomEquipment(code="piano"), RoomEquipment(code="brass")]
    make_room("何もない部屋")
    db.session.commit()

    assert card_ids(client.get("/?equipment=piano").get_data(as_text=True)) == {piano_only.id, piano_brass.id}
    both = client.get("/?equipment=piano&equipment=brass").get_data(as_text=True)
    assert card_ids(both) == {piano_brass.id}


def test_search_shows_each_rooms_mark_on_the_date_and_can_keep_only_free_ones(client, english, make_room, resident):
    day = booking_day()
    free, partly, full = make_room("空き"), make_room("一部空き"), make_room("満室")
    book(resident, partly, day, ["MORNING"])
    book(resident, full, day, ["MORNING", "AFTERNOON", "EVENING"])

    html = client.get(f"/?date={day.isoformat()}").get_data(as_text=True)

    def card(room):
        return re.search(rf'id="room-{room.id}">(.*?)</li>', html, re.S).group(1)

    assert "○" in card(free) and "free" in card(free)
    assert "△" in card(partly) and "partly free" in card(partly)
    assert "×" in card(full) and "full" in card(full)
    only_free = client.get(f"/?date={day.isoformat()}&free_only=y").get_data(as_text=True)
    assert card_ids(only_free) == {free.id, partly.id}


def test_rooms_not_bookable_online_are_listed_and_marked_unless_filtered_out(client, english, make_room):
    bookable = make_room("予約できる部屋")
    no_fees = make_room("料金未掲載の部屋", divisions=[("MORNING", time(9), time(12), None, None)])

    html = client.get("/").get_data(as_text=True)

    assert card_ids(html) == {bookable.id, no_fees.id}
    no_fees_card = re.search(rf'id="room-{no_fees.id}">(.*?)</li>', html, re.S).group(1)
    assert "Not bookable online yet" in no_fees_card
    assert "Not bookable online yet" not in re.search(rf'id="room-{bookable.id}">(.*?)</li>', html, re.S).group(1)
    assert card_ids(client.get("/?online_only=y").get_data(as_text=True)) == {bookable.id}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("date=2026-02-30", "Enter a real date as YYYY-MM-DD"),
        ("date=tomorrow", "Enter a real date as YYYY-MM-DD"),
        ("date=2000-01-01", "Choose a date from today up to one year ahead."),
        ("capacity=-5", "Enter a number of people from 1 to 10000."),
        ("capacity=lots", "Enter the number of people as a whole number"),
        ("capacity=99999999999999999999", "Enter a number of people from 1 to 10000."),
        ("kind=castle", "Choose a kind of room from the list."),
        ("building=999999999999", "Choose a building from the list."),
        ("equipment=harp", "Choose equipment from the list."),
        ("free_only=y", "Choose a date to see only rooms with a free slot."),
    ],
)
def test_bad_search_input_gives_a_clear_message(client, english, room, query, message):
    response = client.get(f"/?{query}")

    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert message in html
    assert 'role="alert"' in html
    assert card_ids(html) == set()


# --- the room page ---------------------------------------------------------


def test_room_page_shows_the_details_fees_rules_and_closures(client, english, make_room):
    room = make_room("音楽室", name_kana="オンガクシツ", accessibility_notes="Lift to the 3rd floor",
                     website_url="https://example.org/music")
    room.area_m2 = 78
    room.equipment.append(RoomEquipment(code="piano"))
    room.closures.append(Closure(kind=ClosureKind.MONTHLY, weekday=0, nth=2, reason="点検"))
    db.session.commit()

    html = client.get(f"/rooms/{room.id}").get_data(as_text=True)

    # The Japanese name beside the English one, its katakana reading as hiragana ruby; catalog Japanese marked as such.
    assert '<small lang="ja"><ruby>音楽室<rp>（</rp><rt>おんがくしつ</rt><rp>）</rp></ruby></small>' in html
    assert '<dd lang="ja">東京都中央区1-1-1</dd>' in html
    assert '<dd>Lift to the 3rd floor</dd>' in html
    for text in ["Music room", "Test Hall", "東京都中央区1-1-1", "30 people", "78 m²", "Piano",
                 "Lift to the 3rd floor", 'href="https://example.org/music"', "Morning", "09:00–12:00",
                 "¥2,800", "Afternoon", "13:00–17:00", "¥3,600", "1.5 times these fees",
                 "opens 2 months before it, on day 1 at 09:00, and closes 24 hours before the start",
                 "29 December to 3 January", "The 2nd Monday of every month", "点検"]:
        assert text in html, text


def test_hourly_room_page_shows_opening_hours_and_rates(client, english, make_hourly_room):
    court = make_hourly_room()

    html = client.get(f"/rooms/{court.id}").get_data(as_text=True)

    assert "09:00–21:00" in html
    assert "From 1 h to 3 h, in steps of 1 h" in html
    assert "¥1,000 per 1 h" in html and "¥1,500 per 1 h" in html


def test_unknown_or_inactive_room_is_not_found(client, make_room):
    inactive = make_room("休止中", active=False)

    assert client.get("/rooms/4242").status_code == 404
    assert client.get("/rooms/99999999999").status_code == 404
    assert client.get(f"/rooms/{inactive.id}").status_code == 404
    assert client.get("/rooms/4242/days/2026-12-01").status_code == 404


def test_calendar_marks_free_partly_full_closed_and_outside_the_window(client, english, make_room, resident):
    day = booking_day()
    room = make_room()
    month = f"?month={day:%Y-%m}"

    html = client.get(f"/rooms/{room.id}{month}").get_data(as_text=True)
    assert mark_on(html, day) == "○"
    assert "free" in calendar_cell(html, day)
    assert f'href="/rooms/{room.id}/days/{day.isoformat()}#day"' in calendar_cell(html, day)

    book(resident, room, day, ["MORNING"])
    html = client.get(f"/rooms/{room.id}{month}").get_data(as_text=True)
    assert mark_on(html, day) == "△"
    assert "partly free" in calendar_cell(html, day)

    book(resident, room, day, ["AFTERNOON", "EVENING"])
    html = client.get(f"/rooms/{room.id}{month}").get_data(as_text=True)
    assert mark_on(html, day) == "×"
    assert "full" in calendar_cell(html, day)
    assert "href=" not in calendar_cell(html, day)

    closed_room = make_room("点検中の部屋")
    closed_room.closures.append(Closure(kind=ClosureKind.PERIOD, start_date=day, end_date=day, reason="点検"))
    db.session.commit()
    html = client.get(f"/rooms/{closed_room.id}{month}").get_data(as_text=True)
    assert mark_on(html, day) == "Closed"  # 休 is a Japanese word: see the test of both languages below
    assert "closed" in calendar_cell(html, day) and "点検" in calendar_cell(html, day)

    today = business_date(now_utc())
    far = date(today.year + (today.month + 2) // 12, (today.month + 2) % 12 + 1, 10)  # three months on
    html = client.get(f"/rooms/{room.id}?month={far:%Y-%m}").get_data(as_text=True)
    assert mark_on(html, far) == "—"
    assert "not bookable online" in calendar_cell(html, far)


def test_calendar_is_a_table_with_headers_caption_and_legend(client, english, room):
    html = client.get(f"/rooms/{room.id}").get_data(as_text=True)

    table = re.search(r'<table class="calendar">(.*?)</table>', html, re.S).group(1)
    assert "<caption>" in table
    assert table.count('<th scope="col"') == 7
    assert '<span class="visually-hidden">Sunday</span>' in table  # the whole weekday for a screen reader
    legend = re.search(r'<ul class="legend"(.*?)</ul>', html, re.S).group(1)
    for words in ["free", "partly free", "full", "closed", "not bookable online"]:
        assert words in legend


def test_month_links_go_forward_and_back(client, room):
    today = business_date(now_utc())
    this_month = f"{today:%Y-%m}"
    following = date(today.year + today.month // 12, today.month % 12 + 1, 1)

    html = client.get(f"/rooms/{room.id}").get_data(as_text=True)
    assert f'rel="next" href="/rooms/{room.id}?month={following:%Y-%m}"' in html
    assert 'rel="prev"' not in html

    html = client.get(f"/rooms/{room.id}?month={following:%Y-%m}").get_data(as_text=True)
    assert f'rel="prev" href="/rooms/{room.id}?month={this_month}"' in html


def test_day_view_offers_the_free_divisions(client, english, room, resident):
    day = booking_day()
    book(resident, room, day, ["AFTERNOON"])

    for url in (f"/rooms/{room.id}?date={day.isoformat()}", f"/rooms/{room.id}/days/{day.isoformat()}"):
        html = client.get(url).get_data(as_text=True)
        section = re.search(r'<section id="day"(.*?)</section>', html, re.S).group(1)
        assert f'action="/rooms/{room.id}/book"' in section
        assert f'name="date" value="{day.isoformat()}"' in section
        assert re.search(r'value="MORNING" id="unit-MORNING">', section)
        assert re.search(r'value="AFTERNOON" id="unit-AFTERNOON" disabled>', section)
        assert "Taken" in section and "Free" in section


def test_day_view_of_an_hourly_room_offers_start_times_and_durations(client, english, make_hourly_room, resident):
    court = make_hourly_room()
    day = booking_day()
    booking.reserve(resident, court, rules.hourly_slot(court, day, time(10), 60))
    db.session.commit()

    html = client.get(f"/rooms/{court.id}/days/{day.isoformat()}").get_data(as_text=True)

    starts = re.search(r'<select name="start" id="start">(.*?)</select>', html, re.S).group(1)
    assert '<option value="09:00">' in starts and '<option value="20:00">' in starts
    assert '"10:00"' not in starts
    durations = re.search(r'<select name="minutes" id="minutes">(.*?)</select>', html, re.S).group(1)
    assert re.findall(r'value="(\d+)"', durations) == ["60", "120", "180"]


def test_division_room_with_other_ward_divisions_uses_their_labels(client, english, make_room):
    room = make_room("会議室", divisions=[("DIVISION_1", time(9, 30), time(11, 30), 1000, 1200),
                                         ("DIVISION_2", time(12), time(14), 1000, 1200)])

    html = client.get(f"/rooms/{room.id}/days/{booking_day().isoformat()}").get_data(as_text=True)

    assert "Division 1" in html and "09:30–11:30" in html and "Division 2" in html


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("?month=2026-13", "Enter a month as YYYY-MM"),
        ("?month=soon", "Enter a month as YYYY-MM"),
        ("?month=1999-01", "Choose a month from a year ago up to two years ahead."),
        ("?month=99999999999999999999-01", "Enter a month as YYYY-MM"),  # was an OverflowError (500)
        ("?month=2026-99999999999999999999", "Enter a month as YYYY-MM"),
        ("?month=0000-01", "Enter a month as YYYY-MM"),
        ("?month=２０２６-１２", "Enter a month as YYYY-MM"),
        ("?month=2_026-12", "Enter a month as YYYY-MM"),
        ("?month=-2026-12", "Enter a month as YYYY-MM"),
        ("?date=99999999999999999999-01-01", "Enter a real date as YYYY-MM-DD"),
        ("/days/99999999999999999999-01-01", "Enter a real date as YYYY-MM-DD"),
        ("?date=2026-02-30", "Enter a real date as YYYY-MM-DD"),
        ("?date=0001-01-01", "Choose a date from a year ago up to two years ahead."),
        ("/days/not-a-date", "Enter a real date as YYYY-MM-DD"),
        ("/days/9999-12-31", "Choose a date from a year ago up to two years ahead."),
    ],
)
def test_bad_room_page_input_gives_a_clear_message_and_the_current_month(client, english, room, url, message):
    response = client.get(f"/rooms/{room.id}{url}")

    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert message in html
    today = business_date(now_utc())
    assert calendar_cell(html, today)


def test_a_room_not_bookable_online_says_so_and_has_no_calendar(client, english, make_room, make_hourly_room):
    no_fee = make_room("料金未定", divisions=[("MORNING", time(9), time(12), 1000, None)])
    no_hours = make_hourly_room("時間未定のコート", open_time=None, close_time=None)

    for room in (no_fee, no_hours):
        for url in (f"/rooms/{room.id}", f"/rooms/{room.id}/days/{booking_day().isoformat()}"):
            response = client.get(url)
            assert response.status_code == 200
            html = response.get_data(as_text=True)
            assert "Not bookable online yet" in html
            assert 'class="calendar"' not in html and 'id="day"' not in html


# --- languages ----------------------------------------------------------------


# Each test asks for one language: the test app context (and so flask_babel's
# cached locale on g) lives across the requests of a test.
PAGES = ("/", "/rooms/{room}", "/rooms/{room}/days/{day}")


def test_search_and_room_pages_render_in_japanese_by_default(client, room):
    for page in PAGES:
        html = client.get(page.format(room=room.id, day=booking_day().isoformat())).get_data(as_text=True)
        assert '<html lang="ja"' in html and "音楽室" in html, page


def test_search_and_room_pages_render_in_english(client, room):
    assert client.post("/lang/en", data={"next": "/"}).status_code == 302

    for page in PAGES:
        html = client.get(page.format(room=room.id, day=booking_day().isoformat())).get_data(as_text=True)
        assert '<html lang="en"' in html and "Music room" in html, page


def closed_room_and_day(make_room):
    day = booking_day()
    room = make_room("点検中の部屋")
    room.closures.append(Closure(kind=ClosureKind.PERIOD, start_date=day, end_date=day, reason="点検"))
    db.session.commit()
    return room, day


def test_the_closed_mark_is_a_word_in_english_and_stays_休_in_japanese(client, make_room):
    room, day = closed_room_and_day(make_room)
    url = f"/rooms/{room.id}?month={day:%Y-%m}"

    html = client.get(url).get_data(as_text=True)
    assert mark_on(html, day) == "休"
    assert "休館" in calendar_cell(html, day)  # what a screen reader says
    legend = re.search(r'<ul class="legend"(.*?)</ul>', html, re.S).group(1)
    assert '<span class="mark" aria-hidden="true">休</span> 休館' in legend

    client.post("/lang/en")
    html = client.get(url).get_data(as_text=True)
    assert mark_on(html, day) == "Closed"
    assert "休" not in calendar_cell(html, day)
    assert re.search(r"<span class=\"visually-hidden\">\w+ \d+ \w+, closed \(", calendar_cell(html, day))
    legend = re.search(r'<ul class="legend"(.*?)</ul>', html, re.S).group(1)
    assert "休" not in legend
    # Said once, not "Closed closed".
    assert '<li class="mark-closed"><span class="mark word">Closed</span></li>' in legend
    search = client.get(f"/?date={day.isoformat()}").get_data(as_text=True)
    assert "休" not in re.search(r'<section aria-labelledby="results-title">(.*?)</section>', search, re.S).group(1)
    card = re.search(rf'id="room-{room.id}">(.*?)</li>', search, re.S).group(1)
    assert '<span class="mark word">Closed</span>' in card


def test_the_fee_table_scroll_region_can_be_reached_by_keyboard(client, english, room):
    html = client.get(f"/rooms/{room.id}").get_data(as_text=True)

    region = re.search(r'<div class="scroll"([^>]*)>\s*<table class="fees">', html)
    assert region, "the fee table sits in its scroll region"
    # axe scrollable-region-focusable: focusable, and named for the screen reader that lands on it.
    assert 'tabindex="0"' in region.group(1) and 'role="region"' in region.group(1)
    assert 'aria-labelledby="fees-caption"' in region.group(1) and '<caption id="fees-caption">' in html


@pytest.fixture
def receipt_page(client, room, resident, login_as):
    from reservations.services.receipts import issue_receipt

    made = book(resident, room, booking_day(), ["MORNING"])
    issue_receipt(made)
    db.session.commit()
    login_as(resident)
    return f"/bookings/{made.id}/receipt"


def test_the_receipt_names_its_issuer_in_english_beside_the_japanese_it_was_issued_under(app, client, receipt_page):
    html = client.get(receipt_page).get_data(as_text=True)
    issuer = re.search(r'<footer class="receipt-issuer">(.*?)</footer>', html, re.S).group(1)
    assert app.config["ISSUER_NAME"] in issuer and app.config["ISSUER_NAME_EN"] not in issuer

    client.post("/lang/en")
    html = client.get(receipt_page).get_data(as_text=True)
    issuer = re.search(r'<footer class="receipt-issuer">(.*?)</footer>', html, re.S).group(1)
    assert f'<span class="issuer-name">{app.config["ISSUER_NAME_EN"]}</span>' in issuer
    assert f'<span class="issuer-name-ja" lang="ja">{app.config["ISSUER_NAME"]}</span>' in issuer


def test_a_receipt_issued_under_an_earlier_name_keeps_it_in_english_too(app, client, receipt_page):
    issued_under = app.config["ISSUER_NAME"]
    app.config["ISSUER_NAME"] = "中央区 区民施設課"  # renamed since; the English setting now translates this name
    app.config["ISSUER_NAME_EN"] = "Chuo City Community Facilities Division"

    client.post("/lang/en")
    html = client.get(receipt_page).get_data(as_text=True)
    issuer = re.search(r'<footer class="receipt-issuer">(.*?)</footer>', html, re.S).group(1)
    assert issued_under in issuer and "Community Facilities" not in issuer


@pytest.mark.parametrize("locale", ["ja", "en"])
def test_the_mailed_receipt_names_its_issuer_in_the_residents_language(app, room, make_user, locale):
    from reservations.services.receipts import issue_receipt
    from tests.helpers import outbox

    resident = make_user(locale=locale)
    issue_receipt(book(resident, room, booking_day(), ["MORNING"]))
    db.session.commit()
    body = outbox(app)[-1].get_body(("plain",)).get_content()
    issuer = next(line for line in body.splitlines() if app.config["ISSUER_NAME"] in line
                  or app.config["ISSUER_NAME_EN"] in line)
    expected = app.config["ISSUER_NAME_EN"] if locale == "en" else app.config["ISSUER_NAME"]
    assert issuer.endswith(expected)
