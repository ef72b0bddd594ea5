-- A schema with one of every kind of object a schema fingerprint describes,
-- and names that need quoting and escaping, for
-- tests/integration/test_fingerprint.c.

CREATE EXTENSION citext;
CREATE SCHEMA app;
CREATE SCHEMA "Odd Schema";
CREATE TYPE app.mood AS ENUM ('happy', 'sad', 'o''k');
CREATE DOMAIN app.amount AS numeric(12,2) DEFAULT 0 NOT NULL CHECK (VALUE >= 0);
CREATE TYPE app.pair AS (a integer, b text);
CREATE TYPE app.floatrange AS RANGE (subtype = float8, subtype_diff = float8mi);
CREATE COLLATION app.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE app.customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email citext NOT NULL UNIQUE,
    name text COLLATE "C" NOT NULL,
    nick text COLLATE app.ci,
    mood app.mood DEFAULT 'happy',
    since date DEFAULT '2020-01-02',
    name_len integer GENERATED ALWAYS AS (length(name)) STORED
);
CREATE TABLE app.orders (
    id serial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES app.customers (id) ON DELETE CASCADE,
    total app.amount,
    placed timestamptz NOT NULL DEFAULT now(),
    note text,
    CONSTRAINT orders_total_check CHECK (total < 1000000),
    CONSTRAINT orders_placed_check CHECK (placed > '2000-01-01 00:00:00+00')
);
ALTER TABLE app.orders ALTER COLUMN note SET STORAGE external;
ALTER TABLE app.orders ALTER COLUMN note SET COMPRESSION pglz;
CREATE INDEX orders_customer_idx ON app.orders (customer_id) WHERE total > 0;
CREATE INDEX orders_note_idx ON app.orders USING btree (lower(note) text_pattern_ops) WITH (fillfactor = 70);
CREATE STATISTICS app.orders_stats (dependencies) ON customer_id, total FROM app.orders;
CREATE TABLE app.events (id bigint NOT NULL, at date NOT NULL, payload jsonb) PARTITION BY RANGE (at);
CREATE TABLE app.events_2024 PARTITION OF app.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE app.events_2025 PARTITION OF app.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE INDEX events_at_idx ON app.events (at);
CREATE TABLE app.base (id integer, label text);
CREATE TABLE app.child (extra integer) INHERITS (app.base);
-- Added to the parent after the child: the child's columns are now in an
-- order a dump and restore does not reproduce.
ALTER TABLE app.base ADD COLUMN added_later integer;
CREATE TABLE "Odd Schema"."Mixed ""Case"" Table" ("tab	col" text, "new
line" integer) WITH (fillfactor = 80);
CREATE UNLOGGED SEQUENCE app.counter AS integer START 5 INCREMENT 5 MAXVALUE 1000 CYCLE;
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.note := coalesce(NEW.note, 'n/a');
    RETURN NEW;
END
$$;
CREATE FUNCTION app.add(a integer, b integer DEFAULT 1) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN a + b;
CREATE PROCEDURE app.noop() LANGUAGE sql AS $$ SELECT 1 $$;
CREATE AGGREGATE app.total(numeric) (sfunc = numeric_add, stype = numeric, initcond = '0');
CREATE TRIGGER orders_touch BEFORE INSERT OR UPDATE OF note ON app.orders
    FOR EACH ROW WHEN (NEW.total > 0) EXECUTE FUNCTION app.touch();
CREATE VIEW app.big_orders WITH (security_barrier) AS
    SELECT o.id, o.total, c.email FROM app.orders o JOIN app.customers c ON c.id = o.customer_id
     WHERE o.total > 100;
CREATE MATERIALIZED VIEW app.order_totals AS
    SELECT customer_id, sum(total) AS total FROM app.orders GROUP BY customer_id;
CREATE UNIQUE INDEX order_totals_customer_idx ON app.order_totals (customer_id);
ALTER TABLE app.orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY orders_positive ON app.orders AS RESTRICTIVE FOR SELECT USING (total >= 0);
CREATE RULE customers_no_delete AS ON DELETE TO app.customers WHERE OLD.id < 0 DO INSTEAD NOTHING;
