"""Accounts: sign up, log in and out, reset a forgotten password, keep a profile."""
import email
import email.policy
import html
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import template_rendered
from sqlalchemy import func, select

from reservations.extensions import db
from reservations.models import AuditEntry, Residency, User
from reservations.services import accounts
from reservations.services.accounts import AccountError

GENERIC_LOGIN_ERROR = "The email address or password is not correct."
RESET_ANSWER = "If that address is registered, we have sent it a link to set a new password."


def signup_data(**overrides) -> dict:
    data = {"name": "佐藤 太郎", "email": "taro@example.com", "password": "a long passphrase",
            "confirm": "a long passphrase", "residency": "worker", "phone": ""}
    data.update(overrides)
    return data


def user_count() -> int:
    return db.session.scalar(select(func.count()).select_from(User))


def logged_in_user_id(client) -> str | None:
    """The user id of the session, without its session version ("<id>:<version>")."""
    with client.session_transaction() as sess:
        session_id = sess.get("_user_id")
    return session_id.partition(":")[0] if session_id else None


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def without_tokens(page: str) -> str:
    return re.sub(r'name="csrf_token" value="[^"]*"', 'name="csrf_token" value=""', page)


def alerts(response) -> list[str]:
    """The text of everything announced as an alert, without markup."""
    page = response.get_data(as_text=True)
    blocks = re.findall(r'<(\w+)[^>]*role="alert"[^>]*>(.*?)</\1>', page, re.S)
    return [html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))).strip() for _, body in blocks]


def outbox(app) -> list[email.message.EmailMessage]:
    folder = Path(app.config["MAIL_OUTBOX_DIR"])
    files = sorted(folder.glob("*.eml")) if folder.exists() else []
    return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]


def mailed_link(message, path: str) -> str:
    """The path of the link to `path` in the mail; the link must be on PUBLIC_BASE_URL."""
    body = message.get_body(("plain",)).get_content()
    match = re.search(r"(\S+)(" + re.escape(path) + r"\S*)", body)
    assert match, body
    assert match.group(1) == "http://127.0.0.1:5000", body  # config.PUBLIC_BASE_URL, never the request's host
    return match.group(2)


def reset_link(message) -> str:
    return mailed_link(message, "/account/reset/")


def can_log_in(client, email, password) -> bool:
    client.post("/account/logout")
    client.post("/account/login", data={"email": email, "password": password})
    return logged_in_user_id(client) is not None


# --- sign up -----------------------------------------------------------------------------------

def test_signup_creates_an_unverified_account_and_mails_the_confirmation_link(app, client):
    response = client.post("/account/signup", data=signup_data(phone="03-1234-5678"))

    assert response.status_code == 302
    assert response.headers["Location"] == "/account/signup/sent"
    user = db.session.scalars(select(User)).one()
    assert (user.name, user.email, user.residency, user.phone) == ("佐藤 太郎", "taro@example.com", "worker",
                                                                 "03-1234-5678")
    assert user.check_password("a long passphrase")
    assert user.locale == "ja"
    assert user.email_verified_at is None
    # Not logged in: a new address and a taken one must get the same answer (see below).
    assert logged_in_user_id(client) is None
    [message] = outbox(app)
    assert message["To"] == "taro@example.com"
    assert mailed_link(message, "/account/verify/").startswith("/account/verify/")


def test_signup_stores_the_email_lowercased_and_folds_full_width_input(client):
    client.post("/account/signup", data=signup_data(email=" Ｔａｒｏ＠Example.COM ", phone="０３－１２３４－５６７８"))

    user = db.session.scalars(select(User)).one()
    assert user.email == "taro@example.com"
    assert user.phone == "03-1234-5678"


def test_signup_with_a_registered_address_answers_as_for_a_new_one_and_tells_the_owner(english, app, client,
                                                                                         resident):
    client.get("/account/signup")  # the session gets its CSRF token once, before either answer
    new = client.post("/account/signup", data=signup_data(email="new@example.com"), follow_redirects=True)
    taken = client.post("/account/signup", data=signup_data(email="Resident@EXAMPLE.com"), follow_redirects=True)

    assert (taken.status_code, taken.request.path) == (new.status_code, new.request.path) == (
        200, "/account/signup/sent")
    # The same page, byte for byte, but for the CSRF tokens (signed with the second they were made in).
    assert without_tokens(text(taken)) == without_tokens(text(new))
    assert "Check your mail" in text(taken)
    assert "Set-Cookie" not in taken.headers and "Set-Cookie" not in new.headers
    assert logged_in_user_id(client) is None
    assert user_count() == 2
    db.session.refresh(resident)
    assert resident.name == "山田 花子" and resident.check_password("correct horse")  # nothing changed
    to_new, to_owner = outbox(app)
    assert to_new["To"] == "new@example.com" and to_owner["To"] == "resident@example.com"
    owner_body = to_owner.get_body(("plain",)).get_content()
    assert to_owner["Subject"] != to_new["Subject"]
    assert "http://127.0.0.1:5000/account/login" in owner_body
    assert "http://127.0.0.1:5000/account/reset" in owner_body
    assert "/account/verify/" not in owner_body  # the owner's address is confirmed already


def test_a_sign_up_does_the_same_work_whether_or_not_the_address_is_registered(app, resident, monkeypatch):
    calls = {"hash": 0, "sign": 0}
    real_hash, real_dumps = accounts.hash_password, accounts.URLSafeTimedSerializer.dumps

    def counted_hash(*args, **kwargs):
        calls["hash"] += 1
        return real_hash(*args, **kwargs)

    def counted_dumps(self, *args, **kwargs):
        calls["sign"] += 1
        return real_dumps(self, *args, **kwargs)

    monkeypatch.setattr(accounts, "hash_password", counted_hash)
    monkeypatch.setattr(accounts.URLSafeTimedSerializer, "dumps", counted_dumps)

    new = accounts.sign_up(name="x", email="new@example.com", password="1234567890", residency="resident")
    work_for_new = dict(calls)
    calls.update(hash=0, sign=0)
    taken = accounts.sign_up(name="x", email="resident@example.com", password="1234567890", residency="resident")

    assert (new.created, taken.created) == (True, False)
    assert calls == work_for_new == {"hash": 1, "sign": 1}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"password": "too short", "confirm": "too short"}, "Use at least 10 characters for your password."),
    ({"confirm": "a different passphrase"}, "The two passwords are not the same."),
    ({"email": "taro.example.com"}, "Enter an email address like name@example.jp."),
    ({"email": ""}, "Enter your email address."),
    ({"residency": ""}, "Choose where you live, work or study."),
    ({"residency": "everywhere"}, "Choose where you live, work or study."),
    ({"name": "   "}, "Enter your name."),
    ({"phone": "call me"}, "Enter a phone number with digits and hyphens, like 03-1234-5678."),
    ({"name": "山" * 101}, "Use at most 100 characters."),
], ids=["short-password", "mismatch", "invalid-email", "no-email", "no-residency", "bad-residency", "no-name",
        "bad-phone", "long-name"])
def test_signup_with_a_mistake_explains_it_and_creates_nothing(english, client, overrides, message):
    response = client.post("/account/signup", data=signup_data(**overrides))

    assert response.status_code == 422
    assert any(message in a for a in alerts(response)), alerts(response)
    assert user_count() == 0
    assert logged_in_user_id(client) is None


def test_signup_page_binds_every_label_to_its_input(english, client):
    page = text(client.get("/account/signup"))

    for field in ("name", "email", "password", "confirm", "residency", "phone"):
        assert f'<label for="{field}">' in page
        assert f'id="{field}"' in page
    for value, label in [("resident", "I live in the ward"), ("worker", "I work in the ward"),
                         ("student", "I study in the ward"), ("outside", "None of these (outside the ward)")]:
        assert f'<option value="{value}">{label}</option>' in page


def test_sign_up_service_enforces_the_rules_without_the_form(app):
    with pytest.raises(AccountError) as short:
        accounts.sign_up(name="x", email="x@example.com", password="123456789", residency=Residency.RESIDENT)
    with pytest.raises(AccountError) as residency:
        accounts.sign_up(name="x", email="x@example.com", password="1234567890", residency="martian")

    assert (short.value.code, short.value.field) == ("password_too_short", "password")
    assert residency.value.code == "invalid_residency"
    assert user_count() == 0


def test_sign_up_that_loses_a_race_for_the_address_treats_it_as_taken_and_keeps_the_session_usable(
        app, resident, monkeypatch):
    # Both requests checked "free" before either inserted; the unique constraint decides.
    real_find, looks = accounts.find_user_by_email, []

    def first_look_misses(email):
        looks.append(email)
        return None if len(looks) == 1 else real_find(email)

    monkeypatch.setattr(accounts, "find_user_by_email", first_look_misses)

    lost = accounts.sign_up(name="x", email="RESIDENT@example.com", password="1234567890", residency="resident")

    assert (lost.created, lost.user.id) == (False, resident.id)
    db.session.commit()
    assert user_count() == 1


# --- log in and out ----------------------------------------------------------------------------

def test_login_with_the_right_password_logs_in(client, auth, resident):
    response = auth.login()

    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert logged_in_user_id(client) == str(resident.id)


def test_login_ignores_the_case_of_the_email(client, auth, resident):
    auth.login(email="  RESIDENT@Example.com ")

    assert logged_in_user_id(client) == str(resident.id)


@pytest.mark.parametrize(("email", "password"), [
    ("resident@example.com", "wrong horse"),
    ("nobody@example.com", "correct horse"),
], ids=["wrong-password", "unknown-email"])
def test_a_failed_login_says_the_same_whichever_part_was_wrong(english, client, auth, resident, email, password):
    response = auth.login(email=email, password=password)

    assert response.status_code == 422
    assert alerts(response) == [f"Please check what you entered {GENERIC_LOGIN_ERROR}"]
    assert logged_in_user_id(client) is None


def test_authenticate_refuses_unknown_and_wrong_alike(app, resident):
    with pytest.raises(AccountError) as unknown:
        accounts.authenticate("nobody@example.com", "correct horse")
    with pytest.raises(AccountError) as wrong:
        accounts.authenticate("resident@example.com", "wrong horse")

    assert unknown.value.code == wrong.value.code == "bad_credentials"
    assert unknown.value.field is wrong.value.field is None


@pytest.mark.parametrize(("next_url", "lands_on"), [
    ("/bookings/mine?page=2", "/bookings/mine?page=2"),
    ("https://evil.example/phish", "/"),
    ("//evil.example/phish", "/"),
    ("javascript:alert(1)", "/"),
])
def test_login_follows_next_only_within_the_site(client, resident, next_url, lands_on):
    by_query = client.post("/account/login", query_string={"next": next_url},
                           data={"email": "resident@example.com", "password": "correct horse"})
    client.post("/account/logout")
    by_form = client.post("/account/login", data={"email": "resident@example.com", "password": "correct horse",
                                                  "next": next_url})

    assert by_query.headers["Location"] == lands_on
    assert by_form.headers["Location"] == lands_on


def test_login_page_carries_next_into_the_form(client):
    page = text(client.get("/account/login", query_string={"next": "/account/profile"}))

    assert 'name="next" type="hidden" value="/account/profile"' in page
    assert '<label for="email">' in page and '<label for="password">' in page


def test_logout_by_post_logs_out(client, auth, resident):
    auth.login()

    response = auth.logout()

    assert response.status_code == 302
    assert logged_in_user_id(client) is None


def test_logout_by_get_is_not_allowed(client, auth, resident):
    auth.login()

    response = client.get("/account/logout")

    assert response.status_code == 405
    assert logged_in_user_id(client) == str(resident.id)


class TestWithCsrfProtection:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "WTF_CSRF_ENABLED": True}

    @staticmethod
    def csrf_token(client) -> str:
        return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', client.get("/account/login").text).group(1)

    def test_logout_without_the_token_is_refused_and_keeps_the_session(self, client, login_as, resident):
        login_as(resident)

        response = client.post("/account/logout")

        assert response.status_code == 400
        assert logged_in_user_id(client) == str(resident.id)

    def test_logout_with_the_token_logs_out(self, client, login_as, resident):
        token = self.csrf_token(client)
        login_as(resident)

        client.post("/account/logout", data={"csrf_token": token})

        assert logged_in_user_id(client) is None

    def test_signup_without_the_token_creates_nothing(self, client):
        response = client.post("/account/signup", data=signup_data())

        assert response.status_code == 400
        assert user_count() == 0

    def test_signup_with_the_token_works(self, client):
        token = self.csrf_token(client)

        client.post("/account/signup", data=signup_data(csrf_token=token))

        assert user_count() == 1


# --- password reset ----------------------------------------------------------------------------

def test_asking_for_a_reset_mails_a_link_to_the_registered_address(english, app, client, resident):
    response = client.post("/account/reset", data={"email": "Resident@example.com"}, follow_redirects=True)

    assert RESET_ANSWER in text(response)
    [message] = outbox(app)
    assert message["To"] == "resident@example.com"
    assert message["Subject"] == "パスワード再設定"  # in the user's language (Japanese by default), not the page's
    assert reset_link(message).startswith("/account/reset/")


def test_an_unknown_address_gets_the_same_answer_and_no_mail(english, app, client, resident):
    known = client.post("/account/reset", data={"email": "resident@example.com"})
    known_page = text(client.get(known.headers["Location"]))
    for f in Path(app.config["MAIL_OUTBOX_DIR"]).glob("*.eml"):
        f.unlink()

    unknown = client.post("/account/reset", data={"email": "nobody@example.com"})
    unknown_page = text(client.get(unknown.headers["Location"]))

    assert (unknown.status_code, unknown.headers["Location"]) == (known.status_code, known.headers["Location"])
    assert unknown_page == known_page
    assert RESET_ANSWER in unknown_page
    assert outbox(app) == []


def test_a_reset_does_the_same_work_for_an_unknown_address_as_for_a_registered_one(app, client, resident,
                                                                                   monkeypatch):
    """Counted, not timed: the same fingerprints, signatures and mail renderings either way."""
    calls = {"fingerprint": 0, "sign": 0}
    rendered: list[str] = []
    real_fingerprint, real_dumps = accounts._password_fingerprint, accounts.URLSafeTimedSerializer.dumps

    def counted_fingerprint(*args, **kwargs):
        calls["fingerprint"] += 1
        return real_fingerprint(*args, **kwargs)

    def counted_dumps(self, *args, **kwargs):
        if self.salt == accounts.RESET_SALT.encode():  # not the session cookie's signature
            calls["sign"] += 1
        return real_dumps(self, *args, **kwargs)

    def record_template(sender, template, context, **extra):
        rendered.append(template.name)

    monkeypatch.setattr(accounts, "_password_fingerprint", counted_fingerprint)
    monkeypatch.setattr(accounts.URLSafeTimedSerializer, "dumps", counted_dumps)
    template_rendered.connect(record_template, app)
    try:
        known = client.post("/account/reset", data={"email": "resident@example.com"})
        work_for_known, rendered_for_known = dict(calls), list(rendered)
        calls.update(fingerprint=0, sign=0)
        rendered.clear()
        unknown = client.post("/account/reset", data={"email": "nobody@example.com"})
    finally:
        template_rendered.disconnect(record_template, app)

    assert (unknown.status_code, unknown.headers["Location"]) == (known.status_code, known.headers["Location"])
    assert calls == work_for_known == {"fingerprint": 1, "sign": 1}
    assert rendered == rendered_for_known == ["account/email/reset_password.txt"]
    assert [m["To"] for m in outbox(app)] == ["resident@example.com"]  # rendered for nobody, sent to nobody


def test_a_reset_asked_for_with_a_forged_host_mails_a_link_to_the_public_site(app, client, resident):
    client.post("/account/reset", data={"email": "resident@example.com"}, base_url="http://attacker.invalid",
                headers={"Host": "attacker.invalid", "X-Forwarded-Host": "attacker.invalid"})

    [message] = outbox(app)
    body = message.get_body(("plain",)).get_content()
    assert "attacker.invalid" not in body
    assert re.search(r"^http://127\.0\.0\.1:5000/account/reset/\S+$", body, re.M), body


def test_a_mail_failure_does_not_change_the_answer(english, app, client, resident, monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr("reservations.account.routes.send_mail", broken)

    response = client.post("/account/reset", data={"email": "resident@example.com"}, follow_redirects=True)

    assert response.status_code == 200
    assert RESET_ANSWER in text(response)


def test_the_reset_link_sets_a_new_password_once(english, app, client, resident):
    client.post("/account/reset", data={"email": "resident@example.com"})
    link = reset_link(outbox(app)[0])

    assert client.get(link).status_code == 200
    response = client.post(link, data={"password": "a brand new secret", "confirm": "a brand new secret"})

    assert response.status_code == 302
    assert response.headers["Location"] == "/account/login"
    assert db.session.scalars(select(AuditEntry.action).where(AuditEntry.subject_id == resident.id)).all() == [
        "password_reset"]
    assert can_log_in(client, "resident@example.com", "a brand new secret")
    assert not can_log_in(client, "resident@example.com", "correct horse")

    again = client.post(link, data={"password": "someone elses pass", "confirm": "someone elses pass"})

    assert again.status_code == 400
    assert "This password reset link is not valid or has already been used." in text(again)
    assert can_log_in(client, "resident@example.com", "a brand new secret")
    assert not can_log_in(client, "resident@example.com", "someone elses pass")


def test_a_tampered_reset_link_is_refused(english, app, client, resident):
    client.post("/account/reset", data={"email": "resident@example.com"})
    link = reset_link(outbox(app)[0])
    tampered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")

    assert client.get(tampered).status_code == 400
    response = client.post(tampered, data={"password": "a brand new secret", "confirm": "a brand new secret"})

    assert response.status_code == 400
    assert "This password reset link is not valid or has already been used." in alerts(response)[0]
    assert can_log_in(client, "resident@example.com", "correct horse")


def test_a_reset_link_for_another_purpose_is_refused(app, client, resident):
    from itsdangerous import URLSafeTimedSerializer

    forged = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="some.other.purpose").dumps(
        {"uid": resident.id})

    assert client.get(f"/account/reset/{forged}").status_code == 400


def test_a_reset_link_works_until_its_max_age_and_not_a_second_longer(english, app, client, resident, monkeypatch):
    issued = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    max_age = app.config["PASSWORD_RESET_MAX_AGE"]
    clock = {"now": issued}
    monkeypatch.setattr(accounts, "now_utc", lambda: clock["now"])
    client.post("/account/reset", data={"email": "resident@example.com"})
    link = reset_link(outbox(app)[0])

    clock["now"] = issued + timedelta(seconds=max_age)
    assert client.get(link).status_code == 200

    clock["now"] = issued + timedelta(seconds=max_age + 1)
    response = client.post(link, data={"password": "a brand new secret", "confirm": "a brand new secret"})

    assert response.status_code == 400
    assert "This password reset link has expired. Please ask for a new one." in alerts(response)
    assert can_log_in(client, "resident@example.com", "correct horse")


def test_a_new_password_must_follow_the_rules(english, app, client, resident):
    client.post("/account/reset", data={"email": "resident@example.com"})
    link = reset_link(outbox(app)[0])

    response = client.post(link, data={"password": "short", "confirm": "short"})

    assert response.status_code == 422
    assert any("Use at least 10 characters for your password." in a for a in alerts(response))
    assert can_log_in(client, "resident@example.com", "correct horse")


def test_asking_with_an_invalid_address_explains_it_and_sends_nothing(english, app, client):
    response = client.post("/account/reset", data={"email": "not an address"})

    assert response.status_code == 422
    assert any("Enter an email address like name@example.jp." in a for a in alerts(response))
    assert outbox(app) == []


# --- profile -----------------------------------------------------------------------------------

def test_profile_requires_login(client):
    response = client.get("/account/profile")

    assert response.status_code == 302
    assert response.headers["Location"] == "/account/login?next=%2Faccount%2Fprofile"


def test_profile_update_persists(client, login_as, resident):
    login_as(resident)

    response = client.post("/account/profile", data={"name": "山田 太郎", "phone": "090-1234-5678",
                                                     "residency": "outside", "locale": "en"})

    assert response.status_code == 302
    db.session.expire_all()
    user = db.session.get(User, resident.id)
    assert (user.name, user.phone, user.residency, user.locale) == ("山田 太郎", "090-1234-5678", "outside", "en")
    assert db.session.scalars(select(AuditEntry.action).where(AuditEntry.subject_id == resident.id)).all() == [
        "residency_changed"]


def test_profile_shows_the_current_details_and_the_chosen_language(client, login_as, make_user):
    login_as(make_user("hanako@example.com", residency=Residency.STUDENT, phone="03-0000-0000"))

    page = text(client.get("/account/profile"))

    assert '<html lang="ja">' in page
    assert "hanako@example.com" in page
    assert '<option selected value="student">' in page
    assert 'value="03-0000-0000"' in page

    client.post("/account/profile", data={"name": "山田 花子", "phone": "", "residency": "student", "locale": "en"})

    assert '<html lang="en">' in text(client.get("/account/profile"))


def test_profile_with_a_mistake_changes_nothing(client, login_as, resident):
    login_as(resident)

    response = client.post("/account/profile", data={"name": "", "phone": "", "residency": "resident",
                                                     "locale": "fr"})

    assert response.status_code == 422
    db.session.expire_all()
    assert db.session.get(User, resident.id).name == "山田 花子"


def test_profile_offers_a_password_change_that_needs_the_current_password(english, client, login_as, resident):
    login_as(resident)
    page = text(client.get("/account/profile"))
    for field in ("current_password", "password", "confirm"):
        assert f'<label for="{field}">' in page

    wrong = client.post("/account/password", data={"current_password": "wrong horse",
                                                   "password": "a brand new secret", "confirm": "a brand new secret"})
    short = client.post("/account/password", data={"current_password": "correct horse",
                                                   "password": "short", "confirm": "short"})

    assert wrong.status_code == short.status_code == 422
    assert any("Your current password is not correct." in a for a in alerts(wrong))
    assert any("Use at least 10 characters for your password." in a for a in alerts(short))
    db.session.expire_all()
    assert db.session.get(User, resident.id).check_password("correct horse")

    changed = client.post("/account/password", data={"current_password": "correct horse",
                                                     "password": "a brand new secret",
                                                     "confirm": "a brand new secret"}, follow_redirects=True)

    assert changed.request.path == "/account/profile"
    assert "Your password has been changed. You have been logged out everywhere else." in text(changed)
    assert can_log_in(client, "resident@example.com", "a brand new secret")
    assert not can_log_in(client, "resident@example.com", "correct horse")


# --- languages ---------------------------------------------------------------------------------

@pytest.mark.parametrize("page", ["/account/login", "/account/signup", "/account/reset"])
def test_account_pages_render_in_japanese_by_default_and_in_english_on_request(client, page):
    assert '<html lang="ja">' in text(client.get(page))

    switched = client.post("/lang/en", data={"next": page})

    assert switched.headers["Location"] == page
    assert '<html lang="en">' in text(client.get(page))
    client.post("/lang/ja", data={"next": page})
    assert '<html lang="ja">' in text(client.get(page))


# --- links in mail -----------------------------------------------------------------------------

@pytest.mark.parametrize(("base", "expected"), [
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000/account/login"),
    ("https://yoyaku.example.jp/shisetsu", "https://yoyaku.example.jp/shisetsu/account/login"),
])
def test_mailed_links_are_built_on_the_public_base_url_whatever_the_request_says(app, base, expected):
    from reservations.links import external_url

    app.config["PUBLIC_BASE_URL"] = base
    with app.test_request_context("/", base_url="http://attacker.invalid", headers={"Host": "attacker.invalid"}):
        assert external_url("account.login") == expected
    assert external_url("account.login") == expected  # and the same outside a request (jobs)


def test_the_email_look_up_compares_the_stored_lowercase_address_without_lower(app, resident):
    from sqlalchemy import event

    statements: list[str] = []

    def capture(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        found = accounts.find_user_by_email("  Resident@EXAMPLE.com ")
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)

    assert found is not None and found.id == resident.id
    [look_up] = [s for s in statements if "FROM users" in s]
    assert "lower(" not in look_up.lower()  # so the unique index on email serves it
