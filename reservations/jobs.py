"""Periodic jobs, all declared in one table, run by their own process: `flask jobs run`.

The scheduler never starts inside the web app (gunicorn workers, the
reloader's child): only this command starts it. Each job is small,
idempotent and safe to run in two processes at once (row locks with SKIP
LOCKED), and APScheduler adds max_instances=1 and coalesce within a process.
"""
from collections.abc import Callable
from dataclasses import dataclass

import click
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import current_app
from flask.cli import AppGroup

from .extensions import db
from .services.expiry import release_expired_holds
from .services.refunds import retry_pending_refunds


@dataclass(frozen=True)
class Job:
    id: str
    func: Callable[[], object]
    seconds: int


JOBS = (
    Job("release_expired_holds", lambda: release_expired_holds(), 60),
    Job("retry_pending_refunds", lambda: retry_pending_refunds(), 300),
)

jobs_cli = AppGroup("jobs", help="Run the periodic jobs.")


def run_job(job: Job) -> object:
    """Run one job in the current app context, as one unit of work."""
    try:
        result = job.func()
        db.session.commit()
        current_app.logger.info("job %s: %s", job.id, result)
        return result
    except Exception:
        db.session.rollback()
        current_app.logger.exception("job %s failed", job.id)
        raise
    finally:
        db.session.remove()


@jobs_cli.command("run")
def run() -> None:
    """Run the scheduler in the foreground until stopped."""
    scheduler = build_scheduler(current_app._get_current_object())
    click.echo(f"scheduler: {', '.join(j.id for j in JOBS)}")
    scheduler.start()


def build_scheduler(app) -> BlockingScheduler:
    """Every job of the table, at most one run at a time, missed runs coalesced into one."""
    scheduler = BlockingScheduler(timezone=app.config["TIMEZONE"])
    for job in JOBS:
        scheduler.add_job(_in_context(app, job), "interval", seconds=job.seconds, id=job.id,
                          max_instances=1, coalesce=True, replace_existing=True)
    return scheduler


@jobs_cli.command("once")
@click.argument("job_id")
def once(job_id: str) -> None:
    """Run one job now, e.g. `flask jobs once release_expired_holds`."""
    job = {j.id: j for j in JOBS}.get(job_id)
    if job is None:
        raise click.BadParameter(f"unknown job; choose one of {', '.join(j.id for j in JOBS)}")
    click.echo(f"{job_id}: {run_job(job)}")


def _in_context(app, job: Job):
    def call():
        with app.app_context():
            run_job(job)

    return call
