-- The safe way to a NOT NULL column: a check added NOT VALID, validated
-- later (a lock that lets writes through), then SET NOT NULL in 0004.
-- shardgate:up
ALTER TABLE orders ADD CONSTRAINT orders_customer_present
    CHECK (customer_id IS NOT NULL) NOT VALID;
ALTER TABLE orders ADD CONSTRAINT orders_customer_fk
    FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_present;
ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_fk;
-- shardgate:down
ALTER TABLE orders DROP CONSTRAINT orders_customer_fk;
ALTER TABLE orders DROP CONSTRAINT orders_customer_present;
