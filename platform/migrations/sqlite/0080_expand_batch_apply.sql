-- A matcher batch's writes as ONE statement on SQLite: `INSERT INTO batch_apply (…) VALUES (…)`,
-- each column a JSON array of one table's rows (NULL: none). SQLite has no data-modifying
-- CTEs (PostgreSQL's one-statement write, platform/src/store/matching/write_pg.rs); this view's
-- INSTEAD OF trigger runs the same multi-row statements inside the engine, so a batch is BEGIN
-- IMMEDIATE, this insert, COMMIT: three hand-offs to the connection's worker thread instead of
-- one per table and per read (platform/src/store/matching/write_sqlite.rs).
--
-- `RAISE(ABORT, …)` undoes the whole insert (the transaction stays open, nothing of the batch
-- written) when
-- * `expect_versions` is given and an account's version or a symbol's row is not what the
--   batch was planned on ('tradeplane-batch: moved'; the optimistic path, see
--   platform/src/trading/matcher/optimistic.rs), or
-- * an UPDATE touched fewer rows than it was given ('tradeplane-batch: stale <what>': a row
--   another writer changed). `changes()` in a trigger counts the trigger's previous statement.
-- The texts after the prefix are matched by write_sqlite.rs; change both together.
CREATE VIEW batch_apply AS SELECT
    NULL AS new_orders, NULL AS held_orders, NULL AS changed_orders, NULL AS trades,
    NULL AS accounts, NULL AS positions, NULL AS audits, NULL AS symbols, NULL AS now,
    NULL AS expect_symbols, NULL AS expect_versions;

CREATE TRIGGER batch_apply_insert INSTEAD OF INSERT ON batch_apply
BEGIN
    SELECT RAISE(ABORT, 'tradeplane-batch: moved')
    WHERE NEW.expect_versions IS NOT NULL AND (
        (SELECT count(*) FROM accounts a JOIN json_each(NEW.expect_versions) e
            ON a.id = e.value->>0 AND a.version = e.value->>1)
            != json_array_length(NEW.expect_versions)
        OR (SELECT count(*) FROM symbols s JOIN json_each(NEW.expect_symbols) e
            ON s.symbol = e.value->>0 AND s.seq = e.value->>1 AND s.md_seq = e.value->>2
            AND s.status = e.value->>3 AND s.last_price IS e.value->>4
            AND s.last_qty IS e.value->>5 AND s.last_trade_seq IS e.value->>6)
            != json_array_length(NEW.expect_symbols));

    INSERT INTO orders (id, account_id, client_order_id, symbol, side, order_type, tif, price,
        qty, filled, remaining, status, cancel_reason, priority, approval_requested_at,
        expires_at, approval_reserved_cash, approval_notional, created_at, updated_at)
    SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6,
        value->>7, value->>8, value->>9, value->>10, value->>11, value->>12, value->>13,
        value->>14, value->>15, value->>16, value->>17, NEW.now, NEW.now
    FROM json_each(NEW.new_orders);

    -- Held orders decided in the batch (only rows still held: platform/src/store/matching/held.rs).
    UPDATE orders SET status = d.status, filled = d.filled, remaining = d.remaining,
        cancel_reason = d.cancel_reason, priority = d.priority, approved_by = d.approved_by,
        rejected_by = d.rejected_by, rejected_reason = d.rejected_reason,
        approval_decided_at = NEW.now, updated_at = NEW.now
    FROM (SELECT value->>0 AS id, value->>1 AS status, value->>2 AS filled,
            value->>3 AS remaining, value->>4 AS cancel_reason, value->>5 AS priority,
            value->>6 AS approved_by, value->>7 AS rejected_by, value->>8 AS rejected_reason
          FROM json_each(NEW.held_orders)) AS d
    WHERE orders.id = d.id AND orders.status = 'pending' AND orders.approval_requested_at IS NOT NULL;
    SELECT RAISE(ABORT, 'tradeplane-batch: stale held orders')
    WHERE changes() != json_array_length(NEW.held_orders);

    -- Orders that rested before the batch and traded or were cancelled in it.
    UPDATE orders SET filled = orders.filled + d.filled, remaining = d.remaining,
        status = d.status, cancel_reason = COALESCE(d.cancel_reason, orders.cancel_reason),
        updated_at = NEW.now
    FROM (SELECT value->>0 AS id, value->>1 AS filled, value->>2 AS remaining,
            value->>3 AS status, value->>4 AS cancel_reason
          FROM json_each(NEW.changed_orders)) AS d
    WHERE orders.id = d.id AND orders.status IN ('new', 'partially_filled');
    SELECT RAISE(ABORT, 'tradeplane-batch: stale resting orders')
    WHERE changes() != json_array_length(NEW.changed_orders);

    INSERT INTO trades (symbol, seq, price, qty, taker_side, taker_order_id, maker_order_id,
        taker_account_id, maker_account_id, created_at)
    SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6,
        value->>7, value->>8, NEW.now
    FROM json_each(NEW.trades);

    UPDATE accounts SET cash = accounts.cash + d.cash,
        cash_reserved = accounts.cash_reserved + d.cash_reserved,
        open_orders = accounts.open_orders + d.open_orders
    FROM (SELECT value->>0 AS id, value->>1 AS cash, value->>2 AS cash_reserved,
            value->>3 AS open_orders
          FROM json_each(NEW.accounts)) AS d
    WHERE accounts.id = d.id;
    SELECT RAISE(ABORT, 'tradeplane-batch: stale accounts')
    WHERE changes() != json_array_length(NEW.accounts);

    -- `WHERE true` keeps SQLite from reading ON CONFLICT as part of the SELECT.
    INSERT INTO positions (account_id, symbol, qty, reserved, cost_basis, realized_pnl)
    SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5
    FROM json_each(NEW.positions) WHERE true
    ON CONFLICT (account_id, symbol) DO UPDATE SET qty = excluded.qty,
        reserved = excluded.reserved, cost_basis = excluded.cost_basis,
        realized_pnl = excluded.realized_pnl;

    INSERT INTO audit_events (occurred_at, actor, action, subject, request_id, details,
        risk_score, tags, client_ip)
    SELECT NEW.now, value->>0, value->>1, value->>2, value->>3, value->>4, value->>5,
        value->>6, value->>7
    FROM json_each(NEW.audits);

    UPDATE symbols SET seq = d.seq, md_seq = d.md_seq, status = d.status,
        last_price = d.last_price, last_qty = d.last_qty, last_trade_seq = d.last_trade_seq
    FROM (SELECT value->>0 AS symbol, value->>1 AS seq, value->>2 AS md_seq,
            value->>3 AS status, value->>4 AS last_price, value->>5 AS last_qty,
            value->>6 AS last_trade_seq
          FROM json_each(NEW.symbols)) AS d
    WHERE symbols.symbol = d.symbol;
    SELECT RAISE(ABORT, 'tradeplane-batch: stale symbols')
    WHERE changes() != json_array_length(NEW.symbols);
END;
