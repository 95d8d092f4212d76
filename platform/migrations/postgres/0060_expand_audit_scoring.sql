-- Risk scores, compliance tags and the client address of audit events (docs/security.md,
-- "Audit risk scores and tags"). Only adds nullable columns and indexes (an `expand` migration).
--
-- Existing rows are not backfilled: the append-only trigger refuses every UPDATE, and lifting it
-- for a backfill would weaken the guarantee the trail exists for. They keep NULL (unscored), as
-- do rows a pod of the previous release writes during a rollout.
ALTER TABLE audit_events ADD COLUMN risk_score SMALLINT;
ALTER TABLE audit_events ADD COLUMN tags TEXT;
ALTER TABLE audit_events ADD COLUMN client_ip TEXT;
-- Bounded like every other field. NOT VALID: the existing rows (all NULL) need no scan under the
-- table lock; new rows are checked.
ALTER TABLE audit_events ADD CONSTRAINT audit_events_risk_score_range
    CHECK (risk_score BETWEEN 0 AND 100) NOT VALID;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_tags_length
    CHECK (length(tags) <= 64) NOT VALID;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_client_ip_length
    CHECK (length(client_ip) <= 45) NOT VALID;

-- The listing's filters by kind and by score, newest first.
CREATE INDEX audit_events_action ON audit_events (action, id);
CREATE INDEX audit_events_risk ON audit_events (risk_score, id) WHERE risk_score IS NOT NULL;
-- "Has this user logged in from this address before?" at every login.
CREATE INDEX audit_events_login_ip ON audit_events (actor, client_ip) WHERE action = 'login';
