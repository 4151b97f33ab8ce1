"""Migration 0004 on a database that already holds money: every row gets its own key, states follow."""
import uuid

from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from reservations import create_app
from reservations.extensions import db
from reservations.models import Building, Division, Letting, Refund, Room, User
from reservations.timeutil import now_utc
from tests.conftest import CHUO_DIVISIONS
from tests.helpers import book


def test_existing_payments_and_refunds_get_distinct_keys_and_the_new_states(empty_database, tmp_path):
    app = create_app({"SQLALCHEMY_DATABASE_URI": empty_database, "TESTING": True, "PAYMENTS_ENABLED": True,
                      "MAIL_BACKEND": "outbox", "MAIL_OUTBOX_DIR": str(tmp_path)})
    with app.app_context():
        upgrade()
        building = Building(name="テスト会館", name_kana="テストカイカン", name_en="Test Hall",
                            address="東京都中央区1-1-1")
        room = Room(building=building, name="音楽室", name_en="Music room", kind="music_room", capacity=30,
                    letting=Letting.DIVISION)
        for pos, (code, start, end, weekday_fee, holiday_fee) in enumerate(CHUO_DIVISIONS):
            room.divisions.append(Division(code=code, position=pos, start_time=start, end_time=end,
                                           weekday_fee=weekday_fee, holiday_fee=holiday_fee))
        db.session.add(room)
        users = [User(email=f"u{n}@example.com", name="山田 花子", email_verified_at=now_utc()) for n in range(3)]
        for user in users:
            user.set_password("correct horse")
        db.session.add_all(users)
        db.session.commit()
        payments = [book(user, room, (code,)).payment for user, code in zip(users, ("MORNING", "AFTERNOON", "EVENING"),
                                                                             strict=True)]
        db.session.add_all([Refund(payment_id=payments[0].id, amount=500, partial=True, reason="policy"),
                            Refund(payment_id=payments[0].id, amount=500, partial=True, reason="provider",
                                   state="succeeded")])
        db.session.commit()
        db.session.remove()
        # A database as it was before 0004, holding those rows; then the upgrade.
        downgrade(revision="0003")
        upgrade()
        with db.engine.connect() as conn:
            payment_keys = conn.execute(text("SELECT idempotency_key FROM payments")).scalars().all()
            refunds = conn.execute(text(
                "SELECT idempotency_key, reason, state, attempts, next_attempt_at IS NOT NULL, last_error"
                " FROM refunds ORDER BY id")).all()
            withdrawn = conn.execute(text("SELECT withdrawn_amount FROM payments")).scalars().all()
        db.engine.dispose()

    keys = payment_keys + [r[0] for r in refunds]
    assert len(keys) == 5 and len(set(keys)) == 5 and all(str(uuid.UUID(k)) == k for k in keys)
    assert [tuple(r[1:]) for r in refunds] == [("policy", "pending", 0, True, ""),  # due for the retry job
                                               ("external", "succeeded", 0, False, "")]
    assert withdrawn == [0, 0, 0]
