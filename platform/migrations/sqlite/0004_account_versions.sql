-- Every change to an account row bumps its version, whoever makes it (the matcher's batch, an
-- admin deposit, an asset credit, a restore). The matcher keeps accounts in memory and compares
-- versions to reload only what another writer changed since it last looked.
ALTER TABLE accounts ADD COLUMN version BIGINT NOT NULL DEFAULT 0;

-- The inner UPDATE sets only `version`, which is not in the OF list, so it does not recurse.
CREATE TRIGGER accounts_version AFTER UPDATE OF user_id, cash, cash_reserved, allow_short, max_open_orders, open_orders ON accounts
    FOR EACH ROW BEGIN
        UPDATE accounts SET version = OLD.version + 1 WHERE id = NEW.id;
    END;
