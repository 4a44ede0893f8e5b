-- Schedule records are changed by every node (read, changed, written back under the
-- row's lock): `version` orders the copies nodes keep, and `updated_at` lets a node
-- read only what changed since its last heartbeat.
ALTER TABLE tend_schedule_state ADD COLUMN version bigint NOT NULL DEFAULT 0;
ALTER TABLE tend_schedule_state ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX tend_schedule_state_updated ON tend_schedule_state (updated_at);
UPDATE tend_schedule_state SET version = 1;
-- Claims look for a running run of the same entry (so `overlap` holds cluster-wide).
CREATE INDEX tend_runs_running_schedule ON tend_runs ((meta->>'schedule'))
    WHERE state = 'running';
-- Signatures under the cluster's key (see store::pg::sign): rows from before have
-- none, and are refused as unsigned.
ALTER TABLE tend_journal ADD COLUMN mac text;
ALTER TABLE tend_runs ADD COLUMN mac text;
-- Each node's key fingerprint: nodes whose keys differ cannot read each other's
-- journals (so cannot take each other's runs over), and are reported.
ALTER TABLE tend_nodes ADD COLUMN key_id text NOT NULL DEFAULT '';
