-- Orders, trades and the per-symbol sequence row that serializes matching across replicas.
-- Amounts are integers in 10^-8 units.
CREATE TABLE symbols (
    symbol         TEXT PRIMARY KEY,
    seq            BIGINT NOT NULL DEFAULT 0,
    md_seq         BIGINT NOT NULL DEFAULT 0,
    status         TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'halted')),
    last_price     BIGINT,
    last_qty       BIGINT,
    last_trade_seq BIGINT
);

CREATE TABLE orders (
    id              BIGSERIAL PRIMARY KEY,
    account_id      BIGINT NOT NULL REFERENCES accounts (id),
    client_order_id TEXT,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    order_type      TEXT NOT NULL CHECK (order_type IN ('limit', 'market')),
    tif             TEXT NOT NULL CHECK (tif IN ('GTC', 'IOC', 'FOK')),
    price           BIGINT,
    qty             BIGINT NOT NULL CHECK (qty > 0),
    filled          BIGINT NOT NULL DEFAULT 0 CHECK (filled >= 0 AND filled <= qty),
    remaining       BIGINT NOT NULL DEFAULT 0 CHECK (remaining >= 0),
    status          TEXT NOT NULL CHECK (status IN ('pending', 'new', 'partially_filled', 'filled', 'cancelled')),
    cancel_reason   TEXT,
    priority        BIGINT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (account_id, client_order_id)
);
CREATE INDEX orders_resting ON orders (symbol) WHERE status IN ('new', 'partially_filled');
CREATE INDEX orders_account ON orders (account_id, id);

CREATE TABLE trades (
    id               BIGSERIAL PRIMARY KEY,
    symbol           TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    price            BIGINT NOT NULL,
    qty              BIGINT NOT NULL CHECK (qty > 0),
    taker_side       TEXT NOT NULL CHECK (taker_side IN ('buy', 'sell')),
    taker_order_id   BIGINT NOT NULL REFERENCES orders (id),
    maker_order_id   BIGINT NOT NULL REFERENCES orders (id),
    taker_account_id BIGINT NOT NULL REFERENCES accounts (id),
    maker_account_id BIGINT NOT NULL REFERENCES accounts (id),
    created_at       TIMESTAMPTZ NOT NULL,
    UNIQUE (symbol, seq)
);
CREATE INDEX trades_symbol_time ON trades (symbol, created_at);
CREATE INDEX trades_taker ON trades (taker_account_id, id);
CREATE INDEX trades_maker ON trades (maker_account_id, id);
