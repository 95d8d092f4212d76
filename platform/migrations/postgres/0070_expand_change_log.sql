-- Point-in-time recovery (docs/backups.md, "Point-in-time restore"): the change log that the
-- archiver ships to the backup storage between backups. Only adds tables (an `expand` migration).
--
-- Rows are written by statement-level triggers that exist only while archiving is enabled
-- (`platform/src/store/archive.rs` creates them when a replica starts with ARCHIVE_DEST); the
-- archiver deletes what it has shipped, so the table holds seconds of changes. Neither table is
-- part of a backup: a restored database starts a new archive of its own.
--
-- No index: every statement of every archived transaction appends here, and the archiver reads
-- the whole (small) table once a turn anyway.
CREATE TABLE change_log (
    id  BIGSERIAL NOT NULL,
    -- The writing transaction (pg_current_xact_id), to replay exactly the transactions a
    -- snapshot saw.
    xid BIGINT NOT NULL,
    -- The table, or '' for a restore point.
    tbl TEXT NOT NULL,
    -- W: the row as written (insert or update), D: the row deleted, T: the table truncated,
    -- M: a restore point (`row` holds its name, time and snapshot).
    op  CHAR(1) NOT NULL CHECK (op IN ('W', 'D', 'T', 'M')),
    row JSONB NOT NULL
);

-- One row while archiving is enabled: which archive this database feeds and the number the
-- next segment gets (segments are numbered without gaps).
CREATE TABLE archive_state (
    id               SMALLINT PRIMARY KEY CHECK (id = 1),
    archive_id       TEXT NOT NULL,
    next_segment     BIGINT NOT NULL CHECK (next_segment >= 1),
    enabled_at       TIMESTAMPTZ NOT NULL,
    last_shipped_at  TIMESTAMPTZ
);
