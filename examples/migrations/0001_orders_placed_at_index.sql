-- Orders are looked up by when they were placed. Built CONCURRENTLY, so
-- writes to orders go on during the build: that cannot run in a transaction.
-- shardgate:transaction=off
-- shardgate:up
CREATE INDEX CONCURRENTLY orders_placed_at_idx ON orders (placed_at);
-- shardgate:down
DROP INDEX CONCURRENTLY orders_placed_at_idx;
-- shardgate:verify
SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_placed_at_idx'::regclass;
