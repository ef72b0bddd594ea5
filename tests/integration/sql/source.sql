-- A source database with what a snapshot must carry through unchanged.
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE SCHEMA "Odd Schema";

CREATE TABLE customers (
    id integer PRIMARY KEY,
    name text NOT NULL
);
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY (START WITH 100 INCREMENT BY 7) PRIMARY KEY,
    customer integer NOT NULL REFERENCES customers (id),
    serial_no serial,
    note text,
    amount numeric(20, 5),
    placed_at timestamptz,
    waited interval,
    tags text[],
    counts integer[],
    doc jsonb,
    feeling mood,
    quantity posint,
    doubled integer GENERATED ALWAYS AS (quantity * 2) STORED,
    ratio double precision,
    small real,
    day date,
    raw bytea
);
CREATE INDEX orders_customer ON orders (customer);
CREATE TABLE empty_table (id integer PRIMARY KEY, note text);
CREATE TABLE "Odd Schema"."Mixed ""Case"" Table" ("Weird Col" text, "select" integer, "ünï" text);

CREATE TABLE measurements (id integer, region text NOT NULL, value numeric)
    PARTITION BY LIST (region);
CREATE TABLE measurements_eu PARTITION OF measurements FOR VALUES IN ('eu');
CREATE TABLE measurements_us PARTITION OF measurements FOR VALUES IN ('us');
CREATE TABLE measurements_other PARTITION OF measurements DEFAULT;

CREATE SEQUENCE countdown INCREMENT BY -3 MINVALUE -1000 MAXVALUE 1000 START 500 CYCLE;
SELECT nextval('countdown') FROM generate_series(1, 4);
CREATE SEQUENCE untouched;

CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.note := coalesce(NEW.note, '') || ' (touched)'; RETURN NEW; END $$;
CREATE TRIGGER orders_touch BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION touch();

INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 50) g;
INSERT INTO orders (customer, note, amount, placed_at, waited, tags, counts, doc, feeling,
                    quantity, ratio, small, day, raw)
SELECT 1 + g % 50,
       CASE g % 5 WHEN 0 THEN E'line one\nline two' WHEN 1 THEN E'tab\there \\ backslash'
                  WHEN 2 THEN 'ünïcödé ✓ 日本語 🐘' WHEN 3 THEN '' ELSE NULL END,
       g * 1.23456, timestamptz '2024-02-29 12:34:56.789+05:30' + g * interval '1 hour',
       g * interval '1 day 3 seconds', ARRAY['a', NULL, E'q"u\\o,te'], ARRAY[g, NULL, -g],
       jsonb_build_object('g', g, 'nested', jsonb_build_array(1, 'two', NULL)),
       (ARRAY['sad', 'ok', 'happy']::mood[])[1 + g % 3], 1 + g % 9, g / 7.0, g / 3.0,
       date '2000-01-01' + g, decode(md5(g::text), 'hex')
  FROM generate_series(1, 2000) g;
-- A row of NULLs wherever NULL is allowed.
INSERT INTO orders (customer) VALUES (1);
INSERT INTO "Odd Schema"."Mixed ""Case"" Table" VALUES (E'a\\b', 1, 'x'), (NULL, NULL, NULL);
INSERT INTO measurements SELECT g, (ARRAY['eu', 'us', 'apac'])[1 + g % 3], g * 0.5
  FROM generate_series(1, 3000) g;

-- Large enough to be split across workers at a small chunk size.
CREATE TABLE big (id bigint PRIMARY KEY, payload text, created timestamptz);
INSERT INTO big SELECT g, repeat(md5(g::text), 3), timestamptz 'epoch' + g * interval '1 min'
  FROM generate_series(1, 120000) g;
-- One large TOASTed value of random bytes (about 12 MB).
CREATE TABLE blobs (id integer PRIMARY KEY, content bytea);
INSERT INTO blobs SELECT 1, string_agg(decode(md5(random()::text), 'hex'), ''::bytea)
  FROM generate_series(1, 750000);
INSERT INTO blobs VALUES (2, ''::bytea), (3, NULL);

CREATE MATERIALIZED VIEW order_totals AS
    SELECT customer, sum(amount) AS total FROM orders GROUP BY customer;
CREATE VIEW big_view AS SELECT id FROM big WHERE id % 2 = 0;
COMMENT ON TABLE orders IS 'orders, with every type we care about';
ANALYZE;
