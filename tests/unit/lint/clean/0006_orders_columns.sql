-- shardgate:transaction=off
-- shardgate:up
ALTER TABLE orders
    ADD COLUMN note text DEFAULT 'n/a',
    ADD COLUMN noted_at timestamptz DEFAULT now(),
    ADD COLUMN seen_at timestamptz NOT NULL DEFAULT current_timestamp,
    ADD COLUMN flags int DEFAULT (1 + 2)::int;
CREATE UNIQUE INDEX CONCURRENTLY orders_reference ON orders (reference);
ALTER TABLE orders ADD CONSTRAINT orders_reference_key UNIQUE USING INDEX orders_reference;
VACUUM (ANALYZE) orders;
-- shardgate:down
ALTER TABLE orders DROP CONSTRAINT orders_reference_key;
ALTER TABLE orders DROP COLUMN note, DROP COLUMN noted_at, DROP COLUMN seen_at, DROP COLUMN flags;
-- shardgate:verify
VALUES (1);
SELECT 1 UNION ALL SELECT 2;
