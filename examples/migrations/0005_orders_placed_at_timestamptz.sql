-- placed_at was stored without a time zone. Changing a column's type
-- rewrites the table under an ACCESS EXCLUSIVE lock, an outage on a busy
-- table; blue-green builds the new table beside the old one, keeps it in
-- sync, compares the two row for row and swaps them within one short lock.
-- The USING expressions say how each shape's value comes from the other's,
-- for the rows copied and for the writes in between (both ways).
-- shardgate:mode=bluegreen table=public.orders
-- shardgate:up
ALTER TABLE orders ALTER COLUMN placed_at TYPE timestamptz USING placed_at AT TIME ZONE 'UTC';
-- shardgate:down
ALTER TABLE orders ALTER COLUMN placed_at TYPE timestamp USING placed_at AT TIME ZONE 'UTC';
-- shardgate:verify
SELECT format_type(atttypid, atttypmod) = 'timestamp with time zone'
  FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'placed_at';
