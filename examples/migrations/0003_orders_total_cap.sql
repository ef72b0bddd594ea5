-- A new CHECK in two steps: added NOT VALID here (a short lock, no scan),
-- validated in 0004 (a scan that lets reads and writes go on).
-- shardgate:up
ALTER TABLE orders ADD CONSTRAINT orders_total_cap CHECK (total < 100000) NOT VALID;
-- shardgate:down
ALTER TABLE orders DROP CONSTRAINT orders_total_cap;
