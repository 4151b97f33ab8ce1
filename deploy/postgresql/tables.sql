-- Per-table autovacuum and the app role's settings, for deploy/postgresql/reservations.conf.
-- Run as the schema's owner once the schema exists (after the first `flask db upgrade`), and again after a
-- release whose notes say so; each statement is idempotent:
--   psql -d reservations -v ON_ERROR_STOP=1 -f deploy/postgresql/tables.sql
-- The role is the one in DATABASE_URL (here "reservations"); rename it below if yours differs.

-- The app's sessions: a statement is cancelled after 30 s, far above what a request's statements take (the
-- finance export reads 1,000 rows per fetch); should a job's log ever show "canceling statement due to
-- statement timeout", raise it. A transaction left idle for 5 minutes is ended. No lock_timeout: the
-- advisory-lock queue of a rush is meant to wait.
-- Set on the role, these reach every connection, through pgbouncer too; they apply to new sessions (after
-- `systemctl reload reservations-web` and a restart of the scheduler).
ALTER ROLE reservations SET statement_timeout = '30s';
ALTER ROLE reservations SET idle_in_transaction_session_timeout = '5min';
ALTER ROLE reservations SET lock_timeout = 0;
ALTER ROLE reservations SET timezone = 'UTC';

-- Append-only (UPDATE and DELETE refused by triggers): vacuum only to keep the visibility map current and
-- to freeze a little at a time. By default a table waits for 20 % new rows; here 1 % (and at least 10,000),
-- so a ledger of 10 million rows is visited every 100,000 inserts instead of every 2 million.
ALTER TABLE audit_entries SET (autovacuum_vacuum_insert_scale_factor = 0.01,
                               autovacuum_vacuum_insert_threshold = 10000,
                               autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE ledger_entries SET (autovacuum_vacuum_insert_scale_factor = 0.01,
                                autovacuum_vacuum_insert_threshold = 10000,
                                autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE ledger_settlements SET (autovacuum_vacuum_insert_scale_factor = 0.01,
                                    autovacuum_vacuum_insert_threshold = 10000,
                                    autovacuum_analyze_scale_factor = 0.02);

-- Updated on every hold, payment, confirmation, release and expiry; the calendars and the overlap checks read
-- them all day: vacuumed and analysed after 2 % / 1 % of changed rows instead of 20 % / 10 %.
ALTER TABLE bookings SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.01);
ALTER TABLE payments SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.01);

-- Each scheduler tick inserts a run and updates it once; a losing scheduler's claim is an INSERT that fails
-- on the unique (job, tick) and leaves a dead row. Pruned after JOB_RUNS_RETENTION_DAYS.
ALTER TABLE job_runs SET (autovacuum_vacuum_scale_factor = 0.05);
-- Inserted per delivery, deleted after WEBHOOK_EVENT_RETENTION_DAYS.
ALTER TABLE webhook_events SET (autovacuum_vacuum_scale_factor = 0.05);
