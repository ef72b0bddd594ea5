-- shardgate:mode=bluegreen table=public.orders
-- shardgate:up
ALTER TABLE orders ALTER COLUMN total TYPE numeric(12, 2);
CREATE INDEX orders_total ON public.orders (total);
-- shardgate:down
ALTER TABLE orders ALTER COLUMN total TYPE numeric;
