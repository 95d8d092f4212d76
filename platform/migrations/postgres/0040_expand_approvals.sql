-- Four-eyes approval of large orders (issue 16). Only adds nullable columns and an index (an
-- `expand` migration): builds that predate it never write them, and never read the held rows.
--
-- A held order is stored with status 'pending' — a value the orders CHECK allowed from the
-- start and that every older read (orders, the book rebuild) already skips — and
-- `approval_requested_at` set; the API shows it as `pending_approval`. Widening the CHECK would
-- need a table rebuild on SQLite, and older replicas must not put a held order in their book.
ALTER TABLE orders ADD COLUMN approval_requested_at TIMESTAMPTZ;
ALTER TABLE orders ADD COLUMN expires_at TIMESTAMPTZ;
-- What the held order reserved (cash, 10^-8 units; sells reserve their quantity) and its
-- notional when it was held, so that a restart restores the reservation exactly.
ALTER TABLE orders ADD COLUMN approval_reserved_cash BIGINT;
ALTER TABLE orders ADD COLUMN approval_notional BIGINT;
-- The deciding admin (user id) and when; the rejection reason.
ALTER TABLE orders ADD COLUMN approved_by BIGINT;
ALTER TABLE orders ADD COLUMN rejected_by BIGINT;
ALTER TABLE orders ADD COLUMN rejected_reason TEXT;
ALTER TABLE orders ADD COLUMN approval_decided_at TIMESTAMPTZ;

-- The admin listing and the expiry sweep read only the held orders, by expiry.
CREATE INDEX orders_pending_approval ON orders (expires_at, id)
    WHERE status = 'pending' AND approval_requested_at IS NOT NULL;
