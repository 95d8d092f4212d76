-- Every change to an account row bumps its version, whoever makes it (the matcher's batch, an
-- admin deposit, an asset credit, a restore). The matcher keeps accounts in memory and compares
-- versions to reload only what another writer changed since it last looked.
ALTER TABLE accounts ADD COLUMN version BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION accounts_bump_version() RETURNS trigger AS $$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER accounts_version BEFORE UPDATE ON accounts
    FOR EACH ROW EXECUTE FUNCTION accounts_bump_version();
