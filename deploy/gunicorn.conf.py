"""gunicorn hooks for reservations-web.service (`gunicorn --config deploy/gunicorn.conf.py ...`).

Every setting is a flag in the unit, where `systemctl cat reservations-web` shows it; this file holds only
what a flag cannot say.
"""
import os


def child_exit(server, worker):
    """A worker has ended (recycled by --max-requests, killed by --timeout, or at a reload).

    In prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR set) the dead worker's live gauges
    must be dropped from /metrics; its counters and histograms stay counted.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    """A new worker, before its first request: templates, locale data, the booking path's SQL and the rooms
    residents book, done now rather than while the first residents wait (reservations/warmup.py). Reads
    only; a database that does not answer leaves the worker cold, not down."""
    from reservations.warmup import warm

    warm(worker.wsgi)
