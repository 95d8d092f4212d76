-- Symbol leases and the replica registry (see the PostgreSQL migration). SQLite serves one
-- process, which owns every symbol without a lease; the columns keep both schemas alike for
-- backups and restores across backends.
ALTER TABLE symbols ADD COLUMN owner TEXT;
ALTER TABLE symbols ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;
ALTER TABLE symbols ADD COLUMN lease_expires TEXT;

CREATE TABLE replicas (
    id           TEXT PRIMARY KEY,
    address      TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    leaving      BOOLEAN NOT NULL DEFAULT FALSE
);
