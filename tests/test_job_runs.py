"""Job runs: every run is recorded, and a scheduled run claims its tick so that several schedulers against one
database run each job once per tick (the process-level drill is tests/drills/test_multi_server.py)."""
from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from reservations.extensions import db
from reservations.jobs import JOBS, build_scheduler, prune_job_runs, run_job, run_scheduled
from reservations.models import JobRun
from reservations.timeutil import now_utc

JOB = {job.id: job for job in JOBS}["release_expired_holds"]


def runs() -> list[JobRun]:
    db.session.expire_all()
    return list(db.session.scalars(select(JobRun).order_by(JobRun.id)))


def test_a_run_by_hand_is_recorded_with_its_outcome_counts_and_duration(app):
    run_job(JOB)

    [run] = runs()
    assert (run.job_id, run.tick, run.outcome, run.result) == ("release_expired_holds", None, "ok", "nothing to do")
    assert run.seconds >= 0 and run.finished_at >= run.started_at and run.host


def test_a_second_claim_of_the_same_tick_is_skipped_and_the_next_tick_runs(app):
    with time_machine.travel(now_utc().replace(second=5, microsecond=0), tick=False):
        first = run_scheduled(JOB)
        second = run_scheduled(JOB)  # another scheduler, the same minute
    with time_machine.travel(now_utc().replace(second=5, microsecond=0) + timedelta(minutes=1), tick=False):
        third = run_scheduled(JOB)

    assert first is not None and second is None and third is not None
    ticks = [run.tick for run in runs()]
    assert len(ticks) == 2 and ticks[1] == ticks[0] + 1


def test_a_failed_run_is_recorded_as_failed_and_raises(app):
    def broken():
        raise RuntimeError("boom")

    failing = type(JOB)("broken", broken, 60)
    with pytest.raises(RuntimeError):
        run_job(failing)

    [run] = runs()
    assert run.outcome == "failed" and run.finished_at is not None


def test_the_database_refuses_a_second_row_for_one_tick(app):
    db.session.add_all([JobRun(job_id="x", tick=1, host="a"), JobRun(job_id="x", tick=1, host="b")])
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
    with pytest.raises(IntegrityError):
        db.session.execute(text("INSERT INTO job_runs (job_id, tick, host, started_at, outcome, result, seconds) "
                                "VALUES ('x', 2, 'a', CURRENT_TIMESTAMP, 'ok', '', -1)"))
    db.session.rollback()


def test_old_runs_are_pruned_after_the_retention(app):
    db.session.add_all([JobRun(job_id="x", tick=1, host="a", started_at=now_utc() - timedelta(days=91)),
                        JobRun(job_id="x", tick=2, host="a", started_at=now_utc() - timedelta(days=1))])
    db.session.commit()

    assert prune_job_runs() == {"pruned": 1}
    db.session.commit()
    assert [run.tick for run in runs()] == [2]


def test_every_job_runs_once_as_the_scheduler_starts_and_the_drills_can_shorten_intervals(app):
    app.config["JOB_INTERVAL_SECONDS"] = 2
    jobs = build_scheduler(app).get_jobs()

    assert {job.trigger.interval.total_seconds() for job in jobs} == {2}
    # After the catch-up, each run falls in the middle of its tick: a run a moment late still claims its own.
    assert {job.trigger.start_date.timestamp() % 2 for job in jobs} == {1.0}
    assert all(job.next_run_time is not None and job.next_run_time <= now_utc() + timedelta(seconds=1)
               for job in jobs)
