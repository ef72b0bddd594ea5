-- A nullable column without a default: a change of the catalog only.
-- shardgate:lock_timeout=1s
-- shardgate:up
ALTER TABLE customers ADD COLUMN email text;
COMMENT ON COLUMN customers.email IS 'contact address; filled in by the application';
-- shardgate:down
ALTER TABLE customers DROP COLUMN email;
-- shardgate:verify
SELECT NOT EXISTS (SELECT 1 FROM customers WHERE email IS NOT NULL);
