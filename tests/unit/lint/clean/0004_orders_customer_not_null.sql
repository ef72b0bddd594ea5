-- shardgate:up
ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL;
-- shardgate:down
ALTER TABLE orders ALTER COLUMN customer_id DROP NOT NULL;
