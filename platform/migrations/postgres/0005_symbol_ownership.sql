-- One replica matches a symbol at a time: it holds the symbol's lease (owner, expiry) and every
-- batch it commits checks the lease's fencing token under the row lock, so a replica that lost
-- the lease can never write. Replicas announce themselves (and the address other replicas
-- forward orders to) in `replicas`.
ALTER TABLE symbols ADD COLUMN owner TEXT;
ALTER TABLE symbols ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;
ALTER TABLE symbols ADD COLUMN lease_expires TIMESTAMPTZ;

CREATE TABLE replicas (
    id           TEXT PRIMARY KEY,
    address      TEXT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL,
    leaving      BOOLEAN NOT NULL DEFAULT FALSE
);
