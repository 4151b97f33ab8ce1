"""Periodic jobs, all declared in one table, run by their own process: `flask jobs run`.

The scheduler never starts inside the web app (gunicorn workers, the
reloader's child): only this command starts it. Each job is small,
idempotent and safe to run in two processes at once (row locks with SKIP
LOCKED), and APScheduler adds max_instances=1 and coalesce within a process.

Several schedulers may run against one database (one per app server, or
two for redundancy): each scheduled run first claims its tick, the job's
interval number since the epoch, as a row of job_runs whose (job, tick) is
unique. The first scheduler to claim a tick runs the job; the others skip
it. Every scheduler runs each job once as it starts, so a scheduler that
was stopped catches up at once instead of an interval later.
"""
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import click
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import delete, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError

from . import observability
from .extensions import db
from .models import JobRun
from .services.attendance import mark_finished_as_used
from .services.checkout import capture_confirmed_authorisations
from .services.deadline import send_payment_reminders
from .services.expiry import release_expired_holds
from .services.finance.reconcile import reconcile_yesterday
from .services.groups import send_group_reminders_and_expire
from .services.lottery.rounds import run_lottery
from .services.refunds import retry_pending_refunds
from .services.webhooks import prune_webhook_events
from .timeutil import now_utc


@dataclass(frozen=True)
class Job:
    id: str
    func: Callable[[], object]
    seconds: int

    def interval(self, app) -> int:
        """JOB_INTERVAL_SECONDS shortens every interval at once: the fault drills' schedulers tick each second."""
        return app.config.get("JOB_INTERVAL_SECONDS") or self.seconds


JOBS = (
    Job("release_expired_holds", lambda: release_expired_holds(), 60),
    Job("retry_pending_refunds", lambda: retry_pending_refunds(), 60),  # each refund waits its own backoff
    Job("capture_confirmed_authorisations", lambda: capture_confirmed_authorisations(), 60),
    Job("prune_webhook_events", lambda: prune_webhook_events(), 3600),
    Job("send_payment_reminders", lambda: send_payment_reminders(), 600),  # reminders of deadline bookings, once each
    Job("mark_finished_as_used", lambda: mark_finished_as_used(), 300),  # ended, confirmed, no no-show: used
    Job("send_group_reminders_and_expire", lambda: send_group_reminders_and_expire(), 3600),  # renewal, expiry
    # Yesterday (Tokyo) against Stripe, once: hourly runs after the first success only say "already_done".
    Job("reconcile_yesterday", lambda: reconcile_yesterday(), 3600),
    # Lottery rounds: close at the window's end, settle after pay-by, tell losers of forfeited wins, release.
    Job("run_lottery", lambda: run_lottery(), 60),
    Job("prune_job_runs", lambda: prune_job_runs(), 3600),
)

jobs_cli = AppGroup("jobs", help="Run the periodic jobs.")


def run_job(job: Job, run: JobRun | None = None) -> object:
    """Run one job in the current app context, as one unit of work, and record the run in job_runs."""
    if run is None:  # by hand: no tick to claim
        run = _start_run(job, tick=None)
    run_id = sa_inspect(run).identity[0]  # no query: the row is expired since its commit
    outer_request_id = observability.bind_request_id(run_id)  # what the job logs carries its run's id
    started = time.monotonic()
    try:
        result = job.func()
        db.session.commit()
    except Exception:
        db.session.rollback()
        seconds = time.monotonic() - started
        observability.job_ran(job.id, run_id, "failed", seconds, failed=True)  # its line, with the traceback
        _finish_run(run_id, "failed", seconds, "")
        raise
    else:
        seconds = time.monotonic() - started
        # One line per run, with its counts: what an operator greps for (observability.job_ran).
        observability.job_ran(job.id, run_id, "ok", seconds, result)
        _finish_run(run_id, "ok", seconds, _counts(result))
        return result
    finally:
        db.session.remove()
        observability.restore_request_id(outer_request_id)


def prune_job_runs() -> dict:
    """The run history older than JOB_RUNS_RETENTION_DAYS: a tick that old is never claimed again."""
    cutoff = now_utc() - timedelta(days=current_app.config["JOB_RUNS_RETENTION_DAYS"])
    pruned = db.session.execute(delete(JobRun).where(JobRun.started_at < cutoff)).rowcount
    return {"pruned": pruned}


def run_scheduled(job: Job) -> object | None:
    """A scheduler's run: claim this tick of the job, then run it; None when the tick is claimed already (by
    another scheduler, or by this one's catch-up run at its start)."""
    tick = int(time.time() // job.interval(current_app))
    try:
        run = _start_run(job, tick=tick)
    except IntegrityError:
        db.session.rollback()
        db.session.remove()
        current_app.logger.info("job %s: tick %d already claimed", job.id, tick)
        return None
    return run_job(job, run)


def _start_run(job: Job, *, tick: int | None) -> JobRun:
    run = JobRun(job_id=job.id, tick=tick, host=f"{socket.gethostname()}:{os.getpid()}", outcome="running")
    db.session.add(run)
    db.session.commit()  # the claim is visible to the other schedulers before the job starts
    return run


def _finish_run(run_id: int, outcome: str, seconds: float, result: str) -> None:
    db.session.remove()
    db.session.execute(update(JobRun).where(JobRun.id == run_id).values(
        outcome=outcome, seconds=seconds, result=result[:2000], finished_at=now_utc()))
    db.session.commit()


def _counts(result: object) -> str:
    if isinstance(result, dict):
        return " ".join(f"{key}={value}" for key, value in sorted(result.items())) or "nothing to do"
    return str(result)


def show_job_log(app) -> None:
    """Let the per-run lines through to stderr: Flask's logger inherits WARNING from the root otherwise."""
    if app.logger.level == logging.NOTSET:
        app.logger.setLevel(logging.INFO)


@jobs_cli.command("run")
def run() -> None:
    """Run the scheduler in the foreground until stopped."""
    show_job_log(current_app)
    scheduler = build_scheduler(current_app._get_current_object())
    click.echo(f"scheduler: {', '.join(j.id for j in JOBS)}")
    scheduler.start()


def build_scheduler(app) -> BlockingScheduler:
    """Every job of the table, at most one run at a time, missed runs coalesced into one.

    Each job runs once at start (the catch-up after a stop), then in the middle of each of its ticks: a run
    a little late or early still claims its own tick, where a run at a tick's edge could claim the next one
    and then find it taken by itself, losing a tick."""
    scheduler = BlockingScheduler(timezone=app.config["TIMEZONE"])
    now = time.time()
    first = datetime.fromtimestamp(now, UTC)
    for job in JOBS:
        seconds = job.interval(app)
        mid_tick = datetime.fromtimestamp((now // seconds + 0.5) * seconds, UTC)
        scheduler.add_job(_in_context(app, job), "interval", seconds=seconds, start_date=mid_tick, id=job.id,
                          max_instances=1, coalesce=True, replace_existing=True, next_run_time=first)
    return scheduler


@jobs_cli.command("once")
@click.argument("job_id")
def once(job_id: str) -> None:
    """Run one job now, e.g. `flask jobs once release_expired_holds`."""
    job = {j.id: j for j in JOBS}.get(job_id)
    if job is None:
        raise click.BadParameter(f"unknown job; choose one of {', '.join(j.id for j in JOBS)}")
    show_job_log(current_app)
    click.echo(f"{job_id}: {run_job(job)}")


def _in_context(app, job: Job):
    def call():
        with app.app_context():
            run_scheduled(job)

    return call
