-- prodaudit durable job queue (PostgreSQL).

-- One row per webhook job. state: queued -> running -> done | dead, or queued -> dropped (bounded queue),
-- running -> queued (retry, graceful shutdown). A running job whose lease has expired is claimable again.
CREATE TABLE jobs (
    id               BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id      TEXT        NOT NULL,           -- the newest delivery merged into this job
    event            TEXT        NOT NULL,
    installation_id  BIGINT      NOT NULL,
    repo             TEXT        NOT NULL,           -- owner/name
    pr_number        BIGINT,
    head_sha         TEXT,
    payload          JSONB       NOT NULL,           -- JSON document for the worker
    full_audit       BOOLEAN     NOT NULL DEFAULT FALSE,
    coalescible      BOOLEAN     NOT NULL DEFAULT FALSE, -- an audit of a pull request
    state            TEXT        NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'done', 'dead', 'dropped')),
    attempts         INTEGER     NOT NULL DEFAULT 0,
    coalesced        INTEGER     NOT NULL DEFAULT 0, -- how many later deliveries were merged into this job
    run_after        TIMESTAMPTZ NOT NULL,
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    finished_at      TIMESTAMPTZ
);

-- At most one queued audit per pull request: enqueue coalesces into it (INSERT .. ON CONFLICT DO UPDATE).
CREATE UNIQUE INDEX jobs_one_queued_audit_per_pr ON jobs (repo, pr_number)
    WHERE state = 'queued' AND coalescible;
CREATE INDEX jobs_by_installation ON jobs (installation_id, state, id);
CREATE INDEX jobs_by_pr ON jobs (repo, pr_number, state, id);
CREATE INDEX jobs_by_state ON jobs (state, finished_at);
CREATE INDEX jobs_by_lease_owner ON jobs (lease_owner) WHERE state = 'running';

-- Every delivery id seen (dedup of redeliveries), kept until prune.
CREATE TABLE deliveries (
    delivery_id TEXT        PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX deliveries_by_received_at ON deliveries (received_at);

-- Round-robin fairness: the installation claimed longest ago (lowest sequence, never = NULL) goes first.
-- Claimers lock an installation's row, so its per-installation cap holds across replicas.
CREATE TABLE installations (
    installation_id BIGINT PRIMARY KEY,
    last_claim_seq  BIGINT
);
CREATE SEQUENCE installation_claim_seq;

-- Review comments already posted, by finding fingerprint, so a later push does not repeat them.
CREATE TABLE posted_comments (
    repo        TEXT        NOT NULL,
    pr_number   BIGINT      NOT NULL,
    fingerprint TEXT        NOT NULL,
    comment_id  BIGINT      NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (repo, pr_number, fingerprint)
);

-- The check run of each audited head, so a retry updates it instead of creating a second one.
CREATE TABLE check_runs (
    repo         TEXT        NOT NULL,
    head_sha     TEXT        NOT NULL,
    check_run_id BIGINT      NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (repo, head_sha)
);
CREATE INDEX check_runs_by_updated_at ON check_runs (updated_at);
