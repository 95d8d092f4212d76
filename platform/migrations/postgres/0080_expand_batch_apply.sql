-- SQLite's one-statement batch write (a view with an INSTEAD OF trigger, migrations/sqlite/
-- 0080_expand_batch_apply.sql). PostgreSQL writes a batch as one data-modifying CTE instead
-- (platform/src/store/matching/write_pg.rs). This migration keeps the two backends' migration
-- numbers in step and changes nothing.
SELECT 1;
