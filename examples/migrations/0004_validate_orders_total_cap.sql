-- shardgate:up
ALTER TABLE orders VALIDATE CONSTRAINT orders_total_cap;
-- shardgate:down
-- Nothing to undo: a validated constraint is dropped by 0003's down section.
SELECT 1;
-- shardgate:verify
SELECT convalidated FROM pg_constraint WHERE conname = 'orders_total_cap';
