-- shardgate:transaction=off
-- shardgate:up
CREATE INDEX CONCURRENTLY orders_created ON orders (created_at);
REINDEX INDEX CONCURRENTLY orders_created;
-- shardgate:down
DROP INDEX CONCURRENTLY orders_created;
-- shardgate:verify
SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_created'::regclass;
