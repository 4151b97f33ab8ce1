"""The process that dies mid-payment in test_sigkill_capture.py: `python -m tests.drills.capture_child STEP PAYMENT_ID`.

It builds the app from the environment (APP_ENV=test, DATABASE_URL, the STRIPE_* settings) and runs one
step of the payment path as the pay endpoints run it, then commits as their request would:

- `pay TOKEN`: checkout.pay with a card token (what POST /bookings/<id>/pay does);
- `settle`: checkout.settle (what POST /bookings/<id>/pay/complete does after 3-D Secure).

A `before_commit` listener, registered here and not in the app, stops the process at the commit named by
STOP_AT: "captured" (the commit that would record the provider's capture) or "confirmed" (the commit of
the booking's confirmation). There it prints "STOPPED <what>" and waits to be killed; nothing is committed.
It gives up on its own after a while, so a parent that died never leaves it behind.
"""
import os
import sys
import threading

from sqlalchemy import event
from sqlalchemy.orm import Session

from reservations import create_app
from reservations.extensions import db
from reservations.models import Booking, BookingState, Payment, PaymentState
from reservations.services import checkout

GIVE_UP_SECONDS = 120


def _reached(session: Session, stop_at: str) -> bool:
    held = list(session.identity_map.values())
    if stop_at == "captured":
        return any(isinstance(o, Payment) and o.state == PaymentState.CAPTURED for o in held)
    return any(isinstance(o, Booking) and o.state == BookingState.CONFIRMED for o in held)


def main(step: str, payment_id: str, *args: str) -> None:
    stop_at = os.environ["STOP_AT"]

    def before_commit(session: Session) -> None:
        if _reached(session, stop_at):
            print(f"STOPPED {stop_at}", flush=True)
            threading.Event().wait(GIVE_UP_SECONDS)
            os._exit(3)

    event.listen(Session, "before_commit", before_commit)
    app = create_app()
    with app.app_context():
        payment = db.session.get(Payment, int(payment_id))
        outcome = checkout.pay(payment, token=args[0])[0] if step == "pay" else checkout.settle(payment)
        db.session.commit()
        print(f"FINISHED {outcome}", flush=True)  # the drill failed to stop it where it should


if __name__ == "__main__":
    main(*sys.argv[1:])
