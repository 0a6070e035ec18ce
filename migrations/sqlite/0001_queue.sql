-- prodaudit durable job queue (SQLite). Times are microseconds since the Unix epoch (UTC).

-- One row per webhook job. state: queued -> running -> done | dead, or queued -> dropped (bounded queue),
-- running -> queued (retry, graceful shutdown). A running job whose lease has expired is claimable again.
CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id      TEXT    NOT NULL,           -- the newest delivery merged into this job
    event            TEXT    NOT NULL,
    installation_id  INTEGER NOT NULL,
    repo             TEXT    NOT NULL,           -- owner/name
    pr_number        INTEGER,
    head_sha         TEXT,
    payload          TEXT    NOT NULL,           -- JSON document for the worker
    full_audit       INTEGER NOT NULL DEFAULT 0 CHECK (full_audit IN (0, 1)),
    coalescible      INTEGER NOT NULL DEFAULT 0 CHECK (coalescible IN (0, 1)), -- an audit of a pull request
    state            TEXT    NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'done', 'dead', 'dropped')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    coalesced        INTEGER NOT NULL DEFAULT 0, -- how many later deliveries were merged into this job
    run_after        INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER
);

-- At most one queued audit per pull request: enqueue coalesces into it (INSERT .. ON CONFLICT DO UPDATE).
CREATE UNIQUE INDEX jobs_one_queued_audit_per_pr ON jobs (repo, pr_number)
    WHERE state = 'queued' AND coalescible = 1;
CREATE INDEX jobs_by_installation ON jobs (installation_id, state, id);
CREATE INDEX jobs_by_pr ON jobs (repo, pr_number, state, id);
CREATE INDEX jobs_by_state ON jobs (state, finished_at);
CREATE INDEX jobs_by_lease_owner ON jobs (lease_owner) WHERE state = 'running';

-- Every delivery id seen (dedup of redeliveries), kept until prune.
CREATE TABLE deliveries (
    delivery_id TEXT    PRIMARY KEY,
    received_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX deliveries_by_received_at ON deliveries (received_at);

-- Round-robin fairness: the installation claimed longest ago (lowest sequence, never = NULL) goes first.
CREATE TABLE installations (
    installation_id INTEGER PRIMARY KEY,
    last_claim_seq  INTEGER
);

-- Review comments already posted, by finding fingerprint, so a later push does not repeat them.
CREATE TABLE posted_comments (
    repo        TEXT    NOT NULL,
    pr_number   INTEGER NOT NULL,
    fingerprint TEXT    NOT NULL,
    comment_id  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (repo, pr_number, fingerprint)
) WITHOUT ROWID;

-- The check run of each audited head, so a retry updates it instead of creating a second one.
CREATE TABLE check_runs (
    repo         TEXT    NOT NULL,
    head_sha     TEXT    NOT NULL,
    check_run_id INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (repo, head_sha)
) WITHOUT ROWID;
CREATE INDEX check_runs_by_updated_at ON check_runs (updated_at);
