-- Statements that look dangerous only to a splitter that counts semicolons:
-- lint must see 5 up statements here, and no finding.
-- shardgate:up
CREATE TABLE audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payload text NOT NULL DEFAULT 'none; really'
);
CREATE FUNCTION audit_note() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    -- CREATE INDEX audit_idx ON orders (id); DROP TABLE orders;
    EXECUTE 'CREATE INDEX ' || quote_ident(TG_ARGV[0]) || ' ON orders (id);';
    INSERT INTO audit_log (payload) VALUES ('DROP TABLE orders;');
    RETURN NEW;
END
$body$;
/* a comment; with; semicolons; DROP TABLE orders; */
INSERT INTO audit_log (payload) VALUES (E'it''s \' a quote; DROP TABLE orders;');
DO $$ BEGIN EXECUTE 'TRUNCATE orders'; PERFORM 1; END $$;
CREATE RULE audit_keep AS ON DELETE TO audit_log DO ALSO (
    INSERT INTO audit_log (payload) VALUES ('deleted; once');
    INSERT INTO audit_log (payload) VALUES ('deleted; twice')
);
-- shardgate:down
DROP RULE audit_keep ON audit_log;
DROP FUNCTION audit_note();
DROP TABLE audit_log;
-- shardgate:verify
SELECT count(*) FROM audit_log WHERE payload = 'x;y';
WITH recent AS (SELECT id FROM audit_log ORDER BY id DESC LIMIT 10) SELECT * FROM recent;
