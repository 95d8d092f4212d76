-- The `--demo` market's bot accounts, whose history the demo prunes so that it does not grow
-- the database without bound (see platform/src/demo.rs).
CREATE TABLE demo_bots (
    account_id BIGINT PRIMARY KEY REFERENCES accounts (id)
);

-- Deleting an order checks that no trade references it; these make that (and the prune's own
-- "unreferenced" test) an index lookup instead of a scan of every trade.
CREATE INDEX trades_taker_order ON trades (taker_order_id);
CREATE INDEX trades_maker_order ON trades (maker_order_id);

-- The audit trail stays append-only for everyone but the demo bots: their (synthetic) records
-- may be deleted once old. Updates stay refused for every row.
DROP TRIGGER audit_events_no_delete;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN OLD.actor NOT IN (SELECT 'account:' || account_id FROM demo_bots)
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
