"""The expiry job draining expired holds with two schedulers at once, on PostgreSQL, against localstripe.

Usage: .venv/bin/python bench/expiry_two_schedulers.py [--holds 10000] [--schedulers 2] [--batch 500]
                                                      [--with-intent 0.5] [--authorised 0]

Builds a fresh database with the migrations (created and dropped here, on the
local server: TEST_PG_ADMIN_URL), starts localstripe on a free loopback port,
and makes `--holds` held bookings whose hold ran out an hour ago: half never
reached the pay page (a payment without an intent), half opened it (an intent
at localstripe, never paid); `--with-intent` changes that share, and
`--authorised` makes that share of the intents authorised by a card (paid,
never settled by us: the job confirms them). Then `--schedulers` threads, each with its own
app context, session and connection, start one run of the job at the same
moment, as two `flask jobs run` processes would. Prints the time, the count
of each outcome, and how many holds were handled twice (more than one
held->... audit entry for a booking, or more than one transition of a payment
out of its open state), which must be 0.
"""
import argparse
import logging
import os
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import start_localstripe  # noqa: E402
from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import insert, text, update  # noqa: E402

from reservations import create_app  # noqa: E402
from reservations.extensions import db  # noqa: E402
from reservations.jobs import JOBS, run_job, show_job_log  # noqa: E402
from reservations.models import Booking, Building, Payment, ProviderObject, Room, User  # noqa: E402
from reservations.payments.stripe_gateway import StripeGateway  # noqa: E402

ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOMS = 50


def seed(app, holds: int, share: float) -> list[int]:
    """`holds` expired holds, each with a payment; returns the ids of the payments that get an intent."""
    now = datetime.now(UTC)
    building = Building(name="ベンチ会館", name_kana="ベンチカイカン", name_en="Bench hall",
                        address="東京都中央区1-1-1")
    rooms = [Room(building=building, name=f"第{n}室", name_en=f"Room {n}", kind="meeting_room", capacity=10)
             for n in range(ROOMS)]
    users = [User(email=f"bench{n}@example.com", name="ベンチ", email_verified_at=now, password_hash="x")
             for n in range(holds // 2 + 1)]
    db.session.add_all([building, *rooms, *users])
    db.session.commit()
    start = now + timedelta(days=30)
    rows = []
    for n in range(holds):
        begins = start + timedelta(hours=n // ROOMS)  # one hour per room: no two active bookings overlap
        rows.append(dict(id=n + 1, user_id=users[n // 2].id, room_id=rooms[n % ROOMS].id, start_at=begins,
                         end_at=begins + timedelta(hours=1), state="held", hold_expires_at=now - timedelta(hours=1),
                         price=1000, price_detail={}, residency="resident", channel="online",
                         created_at=now - timedelta(hours=1, minutes=10)))
    db.session.execute(insert(Booking), rows)
    db.session.execute(insert(Payment), [dict(id=n + 1, booking_id=n + 1, amount=1000) for n in range(holds)])
    for table in ("bookings", "payments"):
        db.session.execute(text(f"SELECT setval('{table}_id_seq', :n)"), {"n": holds})
    db.session.commit()
    return [n + 1 for n in range(holds) if int((n + 1) * share) > int(n * share)]


def card_token(stripe_url: str) -> str:
    """What Stripe.js's createToken does in the browser."""
    response = requests.post(f"{stripe_url}/v1/tokens", timeout=10, data={
        "card[number]": "4242424242424242", "card[exp_month]": "12", "card[exp_year]": "2030", "card[cvc]": "123",
        "key": "pk_test_localstripe"})
    response.raise_for_status()
    return response.json()["id"]


def open_pay_pages(app, payment_ids: list[int], authorised: float) -> None:
    """What the pay page does for each: create the intent at the provider and remember it.

    A share of them is then authorised by a card, as if the resident paid and
    their browser never came back.
    """
    keys = dict(db.session.execute(text("SELECT id, idempotency_key FROM payments")).all())
    to_authorise = {p for n, p in enumerate(payment_ids) if int((n + 1) * authorised) > int(n * authorised)}
    local = threading.local()

    def create(payment_id: int) -> tuple[int, str]:
        if not hasattr(local, "gateway"):
            local.gateway = StripeGateway.from_config(app.config)
        intent = local.gateway.create_intent(amount=1000, booking_id=payment_id, payment_id=payment_id,
                                             payment_key=keys[payment_id], description="bench")
        if payment_id in to_authorise:
            local.gateway.confirm_with_token(intent.id, card_token(app.config["STRIPE_API_BASE"]),
                                             payment_key=keys[payment_id])
        return payment_id, intent.id

    if not payment_ids:
        return
    with ThreadPoolExecutor(8) as pool:
        intents = list(pool.map(create, payment_ids))
    for payment_id, intent_id in intents:
        db.session.execute(update(Payment).where(Payment.id == payment_id)
                           .values(intent_id=intent_id, state="pending"))
    db.session.execute(insert(ProviderObject), [dict(provider_id=i, kind="intent", payment_id=p) for p, i in intents])
    db.session.commit()


def handled_twice() -> tuple[int, int]:
    bookings = db.session.scalar(text(
        "SELECT count(*) FROM (SELECT subject_id FROM audit_entries WHERE subject = 'booking' "
        "AND action LIKE 'held->%' GROUP BY subject_id HAVING count(*) > 1) twice"))
    payments = db.session.scalar(text(
        "SELECT count(*) FROM (SELECT subject_id FROM audit_entries WHERE subject = 'payment' "
        "AND (action LIKE 'new->%' OR action LIKE 'pending->%') GROUP BY subject_id HAVING count(*) > 1) twice"))
    return bookings, payments


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--holds", type=int, default=10_000)
    parser.add_argument("--schedulers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=None, help="set-based batch size (default: the job's)")
    parser.add_argument("--with-intent", type=float, default=0.5, help="share of the holds with an intent")
    parser.add_argument("--authorised", type=float, default=0.0, help="share of the intents authorised by a card")
    args = parser.parse_args()
    name = f"bench_expiry_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    localstripe, stripe_url = start_localstripe()
    try:
        app = create_app({
            "APP_ENV": "development", "SQLALCHEMY_DATABASE_URI":
                ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/" + name,
            "PAYMENTS_ENABLED": True, "STRIPE_API_BASE": stripe_url, "STRIPE_JS_URL": f"{stripe_url}/js.stripe.com/v3/",
            "STRIPE_SECRET_KEY": "sk_test_localstripe", "STRIPE_PUBLISHABLE_KEY": "pk_test_localstripe",
            "STRIPE_LIVE_PARAMS": False,
        })
        logging.getLogger("alembic").setLevel(logging.WARNING)
        with app.app_context():
            upgrade()
            with_intent = seed(app, args.holds, args.with_intent)
            started = time.perf_counter()
            open_pay_pages(app, with_intent, args.authorised)
            print(f"seeded {args.holds} expired holds ({len(with_intent)} with an intent at localstripe) "
                  f"in {time.perf_counter() - started:.1f} s")
            db.session.remove()

        show_job_log(app)
        job = {j.id: j for j in JOBS}["release_expired_holds"]
        if args.batch:
            from reservations.services.expiry import release_expired_holds

            job = type(job)(job.id, lambda: release_expired_holds(batch=args.batch), job.seconds)
        barrier = threading.Barrier(args.schedulers)
        results: list = [None] * args.schedulers

        def scheduler(n: int) -> None:
            with app.app_context():
                barrier.wait()
                try:
                    results[n] = run_job(job)
                except Exception as exc:  # reported below
                    results[n] = exc

        threads = [threading.Thread(target=scheduler, args=(n,)) for n in range(args.schedulers)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started

        with app.app_context():
            still_held = db.session.scalar(text("SELECT count(*) FROM bookings WHERE state = 'held'"))
            states = dict(db.session.execute(text("SELECT state, count(*) FROM bookings GROUP BY state")).all())
            twice = handled_twice()
            db.session.remove()
            db.engine.dispose()
        total = Counter()
        for n, result in enumerate(results):
            print(f"scheduler {n + 1}: {result}")
            if isinstance(result, dict):
                total.update(result)
        print(f"holds={args.holds} schedulers={args.schedulers} time={elapsed:.1f} s "
              f"outcomes={dict(total)} counted={sum(total.values())}")
        print(f"bookings by state={states} still held={still_held}")
        print(f"handled twice: bookings={twice[0]} payments={twice[1]} (must be 0)")
        if twice != (0, 0) or sum(total.values()) != args.holds or still_held:
            raise SystemExit(1)
    finally:
        localstripe.terminate()
        localstripe.wait(timeout=10)
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
