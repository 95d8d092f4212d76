-- Users, their brokerage accounts, positions and refresh tokens.
-- Amounts are integers in 10^-8 units (the engine's fixed-point scale), never floats.
CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('trader', 'admin')),
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE accounts (
    id              BIGSERIAL PRIMARY KEY,
    user_id         BIGINT NOT NULL UNIQUE REFERENCES users (id),
    cash            BIGINT NOT NULL DEFAULT 0 CHECK (cash >= 0),
    cash_reserved   BIGINT NOT NULL DEFAULT 0 CHECK (cash_reserved >= 0 AND cash_reserved <= cash),
    allow_short     BOOLEAN NOT NULL DEFAULT FALSE,
    max_open_orders INTEGER NOT NULL DEFAULT 100,
    open_orders     INTEGER NOT NULL DEFAULT 0 CHECK (open_orders >= 0),
    created_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE positions (
    account_id   BIGINT NOT NULL REFERENCES accounts (id),
    symbol       TEXT NOT NULL,
    qty          BIGINT NOT NULL DEFAULT 0,
    reserved     BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    cost_basis   BIGINT NOT NULL DEFAULT 0,
    realized_pnl BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, symbol)
);

CREATE TABLE refresh_tokens (
    id          BIGSERIAL PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id),
    family      TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ,
    revoked_at  TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
