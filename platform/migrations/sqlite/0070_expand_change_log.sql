-- Point-in-time recovery archives PostgreSQL only (docs/backups.md, "Point-in-time restore"):
-- SQLite serves one replica from one file, which `backup` copies consistently. This migration
-- keeps the two backends' migration numbers in step and changes nothing.
SELECT 1;
