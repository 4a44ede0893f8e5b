-- The first schema of the cluster store (src/store/pg/). Leases are timestamps of the
-- database's clock.

CREATE TABLE tend_nodes (
    id text PRIMARY KEY,
    address text NOT NULL,
    version text NOT NULL,
    schedule_hash text NOT NULL,
    started timestamptz NOT NULL DEFAULT now(),
    heartbeat timestamptz NOT NULL DEFAULT now(),
    draining boolean NOT NULL DEFAULT false
);

-- state: the run's outcome, or 'reserved' for an id handed out to a run not yet
-- started (meta is then NULL). lease_until is set while it runs.
CREATE TABLE tend_runs (
    run_id text PRIMARY KEY,
    meta jsonb,
    node text NOT NULL,
    state text NOT NULL,
    lease_until timestamptz
);
CREATE INDEX tend_runs_running ON tend_runs (node) WHERE state = 'running';

-- Each line is the text of a line of the journal file.
CREATE TABLE tend_journal (
    n bigserial PRIMARY KEY,
    run_id text NOT NULL,
    host text NOT NULL,
    line text NOT NULL
);
CREATE INDEX tend_journal_of ON tend_journal (run_id, host, n);

-- Each line is the text of a line of the embedded audit log.
CREATE TABLE tend_audit (
    seq bigint PRIMARY KEY,
    line text NOT NULL
);
-- The last line's seq and hash; appends lock it FOR UPDATE, one at a time.
CREATE TABLE tend_audit_head (
    id smallint PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL,
    hash text NOT NULL
);
INSERT INTO tend_audit_head VALUES
    (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Every host lock taken gets a newer token; journal appends carry theirs.
CREATE SEQUENCE tend_fencing;
CREATE TABLE tend_host_locks (
    host text PRIMARY KEY,
    run_id text NOT NULL,
    node text NOT NULL,
    token bigint NOT NULL,
    holder jsonb NOT NULL,
    lease_until timestamptz NOT NULL
);

-- One row per fire of a schedule entry: the node whose insert won runs it.
CREATE TABLE tend_fires (
    schedule text NOT NULL,
    scheduled_at timestamptz NOT NULL,
    node text NOT NULL,
    reason text NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    run_id text,
    PRIMARY KEY (schedule, scheduled_at)
);

CREATE TABLE tend_schedule_state (
    name text PRIMARY KEY,
    state jsonb NOT NULL
);
