#include "stages/fingerprint.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/mem.h"
#include "common/pg.h"
#include "common/sha256.h"

/* The first line of every description. A later format gets a new number, so
 * a stored description is never mistaken for drift against a newer one. */
static const char header[] = "shardgate-schema 1";

/* One line of the text: "KIND IDENTITY" is its first idlen bytes; when len
 * is larger, a tab and the attributes follow. */
typedef struct desc_line {
    const char *p;
    size_t len;
    size_t idlen;
} desc_line;

struct sg_schema_desc {
    char *text;
    size_t len;
    desc_line *lines;
    size_t nlines;
    char fingerprint[SG_SHA256_HEX_LEN];
};

/*
 * The catalog queries, one per kind of object. Each returns two columns:
 * "KIND IDENTITY", and the attributes or NULL.
 *
 * They run with search_path empty, so that pg_get_*def and format_type
 * schema-qualify every name outside pg_catalog, whatever the caller's
 * search_path. Functions and operators then resolve only in pg_catalog (they
 * are never looked up in pg_temp unless qualified); relations and types
 * could still come from pg_temp, so those are qualified.
 *
 * Lists are ordered by something stable (sort order, inheritance number,
 * names under the "C" collation): never by OID, nor by the server's
 * collation, which may differ between hosts.
 *
 * The pg_get_*def functions read the catalog as it is now, not as of the
 * transaction's snapshot (as pg_dump documents): DDL committed while the
 * queries run can make one fail, and the caller may simply describe again.
 */

/* The SQL is laid out by hand; clang-format would break it mid-word. */
/* clang-format off */

/* User schemas: every pg_* schema is the system's (CREATE SCHEMA refuses the
 * prefix), `shardgate` holds the registry, which changes with every
 * migration applied, and shardgate_new_V / shardgate_old_V hold a blue-green
 * change's shadow and retained tables, which come and go with its steps. */
#define USER_SCHEMA(n) \
    n ".nspname !~ '^pg_' AND " n ".nspname NOT IN ('information_schema', 'shardgate') AND " \
    NOT_BLUEGREEN(n)

#define NOT_BLUEGREEN(n) n ".nspname !~ '^shardgate_(new|old)_[0-9]+$'"

/* An object not created by an extension's script: those are described by
 * the extension's line alone, as pg_dump leaves them to CREATE EXTENSION. */
#define NOT_MEMBER(catalog, oid) \
    "NOT EXISTS (SELECT FROM pg_catalog.pg_depend x" \
    " WHERE x.classid = 'pg_catalog." catalog "'::pg_catalog.regclass" \
    " AND x.objid = " oid " AND x.deptype = 'e')"

#define QNAME(schema, name) "quote_ident(" schema ") || '.' || quote_ident(" name ")"

/* Long definitions are kept as their hash: the line says that the object
 * differs, and the registry stays small. */
#define HASH(text) "encode(sha256(convert_to(" text ", 'UTF8')), 'hex')"

#define COLLATION_NAME(oid) \
    "(SELECT " QNAME("cn.nspname", "co.collname") \
    " FROM pg_catalog.pg_collation co" \
    " JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace" \
    " WHERE co.oid = " oid ")"

static const char schemas_sql[] =
    "SELECT 'schema ' || quote_ident(n.nspname), NULL"
    "  FROM pg_catalog.pg_namespace n"
    " WHERE " USER_SCHEMA("n") " AND " NOT_MEMBER("pg_namespace", "n.oid");

static const char extensions_sql[] =
    "SELECT 'extension ' || quote_ident(e.extname),"
    "       e.extversion || ' schema ' || quote_ident(n.nspname)"
    "  FROM pg_catalog.pg_extension e"
    "  JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace";

/* Every column of pg_collation but the identifying ones and collversion,
 * which is the version of the host's C library or ICU, not of the schema;
 * as jsonb, whatever columns the server version has. */
static const char collations_sql[] =
    "SELECT 'collation ' || " QNAME("n.nspname", "c.collname") ","
    "       (pg_catalog.to_jsonb(c)"
    "        - '{oid,collname,collnamespace,collowner,collversion}'::pg_catalog.text[])::text"
    "  FROM pg_catalog.pg_collation c"
    "  JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace"
    " WHERE " USER_SCHEMA("n") " AND " NOT_MEMBER("pg_collation", "c.oid");

/* Enums, domains (their CHECKs are constraint lines), composite types (their
 * attributes are column lines), ranges and base types; not the array types
 * made along with each type, nor tables' row types, nor multiranges. */
static const char types_sql[] =
    "SELECT 'type ' || " QNAME("n.nspname", "t.typname") ","
    "       CASE t.typtype"
    "       WHEN 'e' THEN 'enum (' || coalesce((SELECT string_agg(quote_literal(e.enumlabel), ', '"
    "                                                             ORDER BY e.enumsortorder)"
    "                                             FROM pg_catalog.pg_enum e"
    "                                            WHERE e.enumtypid = t.oid), '') || ')'"
    "       WHEN 'd' THEN 'domain ' || format_type(t.typbasetype, t.typtypmod)"
    "            || CASE WHEN t.typcollation <> b.typcollation"
    "                    THEN ' collate ' || " COLLATION_NAME("t.typcollation") " ELSE '' END"
    "            || CASE WHEN t.typnotnull THEN ' not null' ELSE '' END"
    "            || coalesce(' default ' || pg_get_expr(t.typdefaultbin, 0), '')"
    "       WHEN 'c' THEN 'composite'"
    "       WHEN 'r' THEN 'range ' || format_type(r.rngsubtype, NULL)"
    "            || CASE WHEN r.rngcollation <> 0"
    "                    THEN ' collate ' || " COLLATION_NAME("r.rngcollation") " ELSE '' END"
    "            || ' opclass ' || (SELECT " QNAME("ocn.nspname", "oc.opcname")
    "                                 FROM pg_catalog.pg_opclass oc"
    "                                 JOIN pg_catalog.pg_namespace ocn"
    "                                   ON ocn.oid = oc.opcnamespace"
    "                                WHERE oc.oid = r.rngsubopc)"
    "            || ' canonical ' || r.rngcanonical || ' subdiff ' || r.rngsubdiff"
    "       ELSE 'base input ' || t.typinput || ' output ' || t.typoutput"
    "            || ' receive ' || t.typreceive || ' send ' || t.typsend"
    "            || ' length ' || t.typlen || ' align ' || t.typalign::text"
    "            || ' storage ' || t.typstorage::text"
    "       END"
    "  FROM pg_catalog.pg_type t"
    "  JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace"
    "  LEFT JOIN pg_catalog.pg_type b ON b.oid = t.typbasetype"
    "  LEFT JOIN pg_catalog.pg_range r ON r.rngtypid = t.oid"
    " WHERE t.typtype IN ('b', 'c', 'd', 'e', 'r')"
    "   AND (t.typrelid = 0 OR (SELECT c.relkind FROM pg_catalog.pg_class c"
    "                            WHERE c.oid = t.typrelid) = 'c')"
    "   AND NOT EXISTS (SELECT FROM pg_catalog.pg_type a WHERE a.typarray = t.oid)"
    "   AND " USER_SCHEMA("n") " AND " NOT_MEMBER("pg_type", "t.oid");

/* Plain, partitioned and foreign tables. A partition names its parent and
 * bound; an inheritance child its parents, in order. */
static const char tables_sql[] =
    "SELECT 'table ' || " QNAME("n.nspname", "c.relname") ","
    "       'kind ' || c.relkind::text || ' persistence ' || c.relpersistence::text"
    "       || CASE WHEN c.reloftype <> 0"
    "               THEN ' of ' || c.reloftype::pg_catalog.regtype ELSE '' END"
    "       || CASE WHEN c.relkind = 'p'"
    "               THEN ' partition by ' || pg_get_partkeydef(c.oid) ELSE '' END"
    "       || CASE WHEN c.relispartition"
    "               THEN coalesce(' partition of '"
    "                             || (SELECT i.inhparent::pg_catalog.regclass::text"
    "                                   FROM pg_catalog.pg_inherits i"
    "                                  WHERE i.inhrelid = c.oid)"
    "                             || ' ' || pg_get_expr(c.relpartbound, c.oid), '')"
    "               ELSE coalesce(' inherits '"
    "                             || (SELECT string_agg(i.inhparent::pg_catalog.regclass::text,"
    "                                                   ', ' ORDER BY i.inhseqno)"
    "                                   FROM pg_catalog.pg_inherits i"
    "                                  WHERE i.inhrelid = c.oid), '') END"
    "       || CASE WHEN c.relrowsecurity THEN ' row-security' ELSE '' END"
    "       || CASE WHEN c.relforcerowsecurity THEN ' force-row-security' ELSE '' END"
    "       || CASE WHEN c.relreplident <> 'd'"
    "               THEN ' replica-identity ' || c.relreplident::text ELSE '' END"
    "       || coalesce(' access-method ' || (SELECT a.amname FROM pg_catalog.pg_am a"
    "                                          WHERE a.oid = c.relam AND a.amname <> 'heap'), '')"
    "       || coalesce(' options ' || c.reloptions::text, '')"
    "       || coalesce(' server ' || (SELECT quote_ident(s.srvname)"
    "                                         || coalesce(' options ' || f.ftoptions::text, '')"
    "                                    FROM pg_catalog.pg_foreign_table f"
    "                                    JOIN pg_catalog.pg_foreign_server s"
    "                                      ON s.oid = f.ftserver"
    "                                   WHERE f.ftrelid = c.oid), '')"
    "  FROM pg_catalog.pg_class c"
    "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind IN ('r', 'p', 'f')"
    "   AND " USER_SCHEMA("n") " AND " NOT_MEMBER("pg_class", "c.oid");

/* Whether a materialized view is populated is data, not schema: a
 * schema-only restore leaves it empty. */
static const char views_sql[] =
    "SELECT CASE c.relkind WHEN 'v' THEN 'view ' ELSE 'matview ' END"
    "       || " QNAME("n.nspname", "c.relname") ","
    "       'definition ' || " HASH("pg_get_viewdef(c.oid)")
    "       || coalesce(' options ' || c.reloptions::text, '')"
    "  FROM pg_catalog.pg_class c"
    "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind IN ('v', 'm')"
    "   AND " USER_SCHEMA("n") " AND " NOT_MEMBER("pg_class", "c.oid");

/* Parameters, not values: the current value is data. */
static const char sequences_sql[] =
    "SELECT 'sequence ' || " QNAME("n.nspname", "c.relname") ","
    "       format_type(s.seqtypid, NULL) || ' start ' || s.seqstart"
    "       || ' increment ' || s.seqincrement || ' min ' || s.seqmin || ' max ' || s.seqmax"
    "       || ' cache ' || s.seqcache || CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END"
    "       || CASE WHEN c.relpersistence = 'u' THEN ' unlogged' ELSE '' END"
    "       || coalesce(' owned-by ' || (SELECT d.refobjid::pg_catalog.regclass::text"
    "                                           || '.' || quote_ident(a.attname)"
    "                                      FROM pg_catalog.pg_depend d"
    "                                      JOIN pg_catalog.pg_attribute a"
    "                                        ON a.attrelid = d.refobjid"
    "                                       AND a.attnum = d.refobjsubid"
    "                                     WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"
    "                                       AND d.objid = c.oid"
    "                                       AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
    "                                       AND d.deptype IN ('a', 'i')), '')"
    "  FROM pg_catalog.pg_class c"
    "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    "  JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid"
    " WHERE c.relkind = 'S'"
    "   AND " USER_SCHEMA("n") " AND " NOT_MEMBER("pg_class", "c.oid");

/* Columns of tables and composite types. The position counts live columns
 * only, so a dropped column leaves no trace. It is left out for inheritance
 * children and partitions: pg_dump recreates a child with its inherited
 * columns first, so their order does not survive a dump and restore. */
static const char columns_sql[] =
    "SELECT 'column ' || " QNAME("n.nspname", "c.relname") " || '.' || quote_ident(a.attname),"
    "       format_type(a.atttypid, a.atttypmod)"
    "       || CASE WHEN a.attcollation <> t.typcollation"
    "               THEN ' collate ' || " COLLATION_NAME("a.attcollation") " ELSE '' END"
    "       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END"
    "       || CASE WHEN a.attgenerated = 's'"
    "               THEN ' generated always as (' || pg_get_expr(d.adbin, d.adrelid) || ') stored'"
    "               WHEN d.adbin IS NOT NULL"
    "               THEN ' default ' || pg_get_expr(d.adbin, d.adrelid) ELSE '' END"
    "       || CASE a.attidentity WHEN 'a' THEN ' identity always'"
    "                             WHEN 'd' THEN ' identity by default' ELSE '' END"
    "       || CASE WHEN a.attstorage <> t.typstorage"
    "               THEN ' storage ' || a.attstorage::text ELSE '' END"
    "       || CASE WHEN a.attcompression <> ''"
    "               THEN ' compression ' || a.attcompression::text ELSE '' END"
    "       || CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid)"
    "               THEN ''"
    "               ELSE ' position ' || row_number() OVER (PARTITION BY a.attrelid"
    "                                                       ORDER BY a.attnum) END"
    "  FROM pg_catalog.pg_attribute a"
    "  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
    "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    "  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid"
    "  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
    " WHERE c.relkind IN ('r', 'p', 'f', 'c') AND a.attnum > 0 AND NOT a.attisdropped"
    "   AND " USER_SCHEMA("n") " AND " NOT_MEMBER("pg_class", "c.oid")
    "   AND (c.relkind <> 'c' OR " NOT_MEMBER("pg_type", "c.reltype") ")";

/* Table and domain constraints; pg_get_constraintdef says NOT VALID and
 * DEFERRABLE itself. A constraint trigger is described as a trigger. */
static const char constraints_sql[] =
    "SELECT 'constraint ' || CASE WHEN co.conrelid <> 0"
    "                             THEN co.conrelid::pg_catalog.regclass::text"
    "                             ELSE co.contypid::pg_catalog.regtype::text END"
    "       || '.' || quote_ident(co.conname),"
    "       pg_get_constraintdef(co.oid)"
    "  FROM pg_catalog.pg_constraint co"
    "  JOIN pg_catalog.pg_namespace n ON n.oid = co.connamespace"
    " WHERE co.contype <> 't'"
    "   AND " USER_SCHEMA("n")
    "   AND (co.conrelid = 0 OR " NOT_MEMBER("pg_class", "co.conrelid") ")"
    "   AND (co.contypid = 0 OR " NOT_MEMBER("pg_type", "co.contypid") ")";

/* An index left INVALID by a failed CREATE INDEX CONCURRENTLY is drift. */
static const char indexes_sql[] =
    "SELECT 'index ' || " QNAME("n.nspname", "c.relname") ","
    "       pg_get_indexdef(i.indexrelid)"
    "       || CASE WHEN i.indisvalid THEN ' valid' ELSE ' invalid' END"
    "       || CASE WHEN i.indisclustered THEN ' clustered' ELSE '' END"
    "       || CASE WHEN i.indisreplident THEN ' replica-identity' ELSE '' END"
    "  FROM pg_catalog.pg_index i"
    "  JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid"
    "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE " USER_SCHEMA("n") " AND " NOT_MEMBER("pg_class", "i.indrelid");

/* Internal triggers (those of foreign keys) belong to their constraint; a
 * blue-green change's sync triggers (their functions live in its schemas)
 * belong to its window, not to the schema. */
static const char triggers_sql[] =
    "SELECT 'trigger ' || t.tgrelid::pg_catalog.regclass::text || '.' || quote_ident(t.tgname),"
    "       pg_get_triggerdef(t.oid)"
    "       || CASE t.tgenabled WHEN 'D' THEN ' disabled' WHEN 'R' THEN ' enabled replica'"
    "                           WHEN 'A' THEN ' enabled always' ELSE '' END"
    "  FROM pg_catalog.pg_trigger t"
    "  JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid"
    "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    "  JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid"
    "  JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace"
    " WHERE NOT t.tgisinternal"
    "   AND " USER_SCHEMA("n") " AND " NOT_BLUEGREEN("pn") " AND " NOT_MEMBER("pg_class", "c.oid");

/* pg_get_functiondef covers arguments, result, language, volatility,
 * security, settings and body; it refuses aggregates, which are described
 * by their parts. The constructors made along with a range type depend on
 * it internally, and are left to it. */
static const char functions_sql[] =
    "SELECT CASE p.prokind WHEN 'a' THEN 'aggregate ' WHEN 'p' THEN 'procedure '"
    "                      ELSE 'function ' END || p.oid::pg_catalog.regprocedure::text,"
    "       CASE WHEN p.prokind = 'a'"
    "            THEN (SELECT 'returns ' || format_type(p.prorettype, NULL)"
    "                         || ' kind ' || a.aggkind::text || ' sfunc ' || a.aggtransfn"
    "                         || ' stype ' || format_type(a.aggtranstype, NULL)"
    "                         || ' finalfunc ' || a.aggfinalfn"
    "                         || ' combinefunc ' || a.aggcombinefn"
    "                         || ' msfunc ' || a.aggmtransfn"
    "                         || ' sortop ' || a.aggsortop::pg_catalog.regoperator"
    "                         || coalesce(' initcond ' || quote_literal(a.agginitval), '')"
    "                    FROM pg_catalog.pg_aggregate a WHERE a.aggfnoid = p.oid)"
    "            ELSE 'definition ' || " HASH("pg_get_functiondef(p.oid)") " END"
    "  FROM pg_catalog.pg_proc p"
    "  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
    " WHERE " USER_SCHEMA("n") " AND " NOT_MEMBER("pg_proc", "p.oid")
    "   AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend x"
    "                    WHERE x.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass"
    "                      AND x.objid = p.oid AND x.deptype = 'i')";

static const char policies_sql[] =
    "SELECT 'policy ' || p.polrelid::pg_catalog.regclass::text || '.' || quote_ident(p.polname),"
    "       CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END"
    "       || ' for ' || p.polcmd::text"
    "       || ' to ' || (SELECT string_agg(r.name, ', ' ORDER BY r.name COLLATE pg_catalog.\"C\")"
    "                       FROM (SELECT CASE WHEN u.oid = 0 THEN 'public'"
    "                                         ELSE quote_ident(pg_get_userbyid(u.oid)) END"
    "                               FROM unnest(p.polroles) AS u(oid)) AS r(name))"
    "       || coalesce(' using (' || pg_get_expr(p.polqual, p.polrelid) || ')', '')"
    "       || coalesce(' with check (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')', '')"
    "  FROM pg_catalog.pg_policy p"
    "  JOIN pg_catalog.pg_class c ON c.oid = p.polrelid"
    "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE " USER_SCHEMA("n") " AND " NOT_MEMBER("pg_class", "c.oid");

/* A view's own _RETURN rule is its definition, described with the view. */
static const char rules_sql[] =
    "SELECT 'rule ' || r.ev_class::pg_catalog.regclass::text || '.' || quote_ident(r.rulename),"
    "       pg_get_ruledef(r.oid)"
    "       || CASE r.ev_enabled WHEN 'D' THEN ' disabled' WHEN 'R' THEN ' enabled replica'"
    "                            WHEN 'A' THEN ' enabled always' ELSE '' END"
    "  FROM pg_catalog.pg_rewrite r"
    "  JOIN pg_catalog.pg_class c ON c.oid = r.ev_class"
    "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE r.rulename <> '_RETURN'"
    "   AND " USER_SCHEMA("n") " AND " NOT_MEMBER("pg_class", "c.oid");

static const char statistics_sql[] =
    "SELECT 'statistics ' || " QNAME("n.nspname", "s.stxname") ","
    "       pg_get_statisticsobjdef(s.oid)"
    "  FROM pg_catalog.pg_statistic_ext s"
    "  JOIN pg_catalog.pg_namespace n ON n.oid = s.stxnamespace"
    " WHERE " USER_SCHEMA("n") " AND " NOT_MEMBER("pg_class", "s.stxrelid");

static const struct {
    const char *what;
    const char *sql;
} queries[] = {
    {"schemas", schemas_sql},
    {"extensions", extensions_sql},
    {"collations", collations_sql},
    {"types", types_sql},
    {"tables", tables_sql},
    {"views", views_sql},
    {"sequences", sequences_sql},
    {"columns", columns_sql},
    {"constraints", constraints_sql},
    {"indexes", indexes_sql},
    {"triggers", triggers_sql},
    {"functions", functions_sql},
    {"policies", policies_sql},
    {"rules", rules_sql},
    {"statistics", statistics_sql},
};

/* clang-format on */

/* The catalog columns and functions above exist from this version on
 * (pg_attribute.attcompression is the newest). */
#define MIN_SERVER_VERSION 140000

static int nomem(sg_error *err)
{
    return sg_error_set(err, SG_E_NOMEM, "out of memory describing the schema");
}

static bool needs_escape(unsigned char c)
{
    return c < 0x20 || c == 0x7f || c == '\\';
}

/* Appends s with backslash and every control character escaped, so that a
 * value never breaks its line nor spills into the next field. */
static int append_escaped(sg_buf *buf, const char *s, sg_error *err)
{
    static const char hex[] = "0123456789abcdef";
    while (*s) {
        size_t run = 0;
        char esc[4];
        size_t esclen = 2;
        unsigned char c;
        while (s[run] && !needs_escape((unsigned char)s[run]))
            run++;
        if (run > 0 && sg_buf_append(buf, s, run, err) < 0)
            return SG_E_NOMEM;
        s += run;
        if (!*s)
            break;
        c = (unsigned char)*s++;
        esc[0] = '\\';
        switch (c) {
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        default:
            esc[1] = 'x';
            esc[2] = hex[c >> 4];
            esc[3] = hex[c & 0xf];
            esclen = 4;
        }
        if (sg_buf_append(buf, esc, esclen, err) < 0)
            return SG_E_NOMEM;
    }
    return 0;
}

/* Bytewise on "KIND IDENTITY", independent of any locale. */
static int compare_identity(const desc_line *a, const desc_line *b)
{
    int c = memcmp(a->p, b->p, a->idlen < b->idlen ? a->idlen : b->idlen);
    if (c != 0)
        return c;
    return a->idlen < b->idlen ? -1 : a->idlen > b->idlen;
}

static int compare_lines(const void *a, const void *b)
{
    return compare_identity(a, b);
}

static int format_error(sg_error *err, size_t lineno, const char *line, size_t len, const char *why)
{
    /* The line as the message shows it: a bad line may hold any byte, and a
     * control character has no place in a log. */
    char shown[208];
    size_t n = 0, i;
    for (i = 0; i < len && n + 8 < sizeof(shown); i++) {
        unsigned char c = (unsigned char)line[i];
        if (c < 0x20 || c == 0x7f)
            n += (size_t)snprintf(shown + n, sizeof(shown) - n, "\\x%02x", c);
        else
            shown[n++] = (char)c;
    }
    shown[n] = '\0';
    sg_error_set(err, SG_E_FORMAT, "malformed schema description at line %zu: %s", lineno, why);
    sg_error_detail(err, "line: %s%s", shown, i < len ? "..." : "");
    return SG_E_FORMAT;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* Checks one object line; fills *out but for its order among the others. */
static int check_line(desc_line *out, const char *p, size_t len, size_t lineno, sg_error *err)
{
    size_t i = 0, tab = 0;
    while (i < len && ((p[i] >= 'a' && p[i] <= 'z') || p[i] == '-'))
        i++;
    if (i == 0 || i == len || p[i] != ' ' || i + 1 == len || p[i + 1] == '\t')
        return format_error(err, lineno, p, len, "expected a kind and an object name");
    for (i++; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\t' && !tab) {
            tab = i;
        } else if (c == '\\') {
            if (i + 1 < len &&
                (p[i + 1] == '\\' || p[i + 1] == 'n' || p[i + 1] == 't' || p[i + 1] == 'r'))
                i++;
            else if (i + 3 < len && p[i + 1] == 'x' && is_hex(p[i + 2]) && is_hex(p[i + 3]))
                i += 3;
            else
                return format_error(err, lineno, p, len, "invalid escape sequence");
        } else if (c < 0x20 || c == 0x7f) {
            return format_error(err, lineno, p, len, "unescaped control character");
        }
    }
    if (tab && tab + 1 == len)
        return format_error(err, lineno, p, len, "empty attributes after the tab");
    out->p = p;
    out->len = len;
    out->idlen = tab ? tab : len;
    return 0;
}

/* Splits d->text into lines, checking every rule sg_schema_describe follows,
 * and hashes it. */
static int index_text(sg_schema_desc *d, sg_error *err)
{
    const char *p = d->text, *end = d->text + d->len;
    size_t lineno = 1;
    uint8_t digest[32];
    int rc;
    const char *nl = memchr(p, '\n', d->len);
    size_t first = nl ? (size_t)(nl - p) : d->len;
    if (first != strlen(header) || memcmp(p, header, first) != 0)
        return format_error(err, 1, p, first, "expected the header \"shardgate-schema 1\"");
    if (!nl)
        return format_error(err, 1, p, first, "no newline at the end");
    for (p = nl + 1; p < end; p = nl + 1) {
        desc_line line, *grown;
        lineno++;
        if (!(nl = memchr(p, '\n', (size_t)(end - p))))
            return format_error(err, lineno, p, (size_t)(end - p), "no newline at the end");
        if ((rc = check_line(&line, p, (size_t)(nl - p), lineno, err)) < 0)
            return rc;
        if (d->nlines > 0) {
            int order = compare_identity(&d->lines[d->nlines - 1], &line);
            if (order == 0)
                return format_error(err, lineno, p, line.len, "object described twice");
            if (order > 0)
                return format_error(err, lineno, p, line.len, "object out of order");
        }
        if (!(grown = sg_array_grow(d->lines, d->nlines, sizeof(*d->lines))))
            return nomem(err);
        d->lines = grown;
        d->lines[d->nlines++] = line;
    }
    sg_sha256(digest, d->text, d->len);
    sg_hex_encode(d->fingerprint, digest, sizeof(digest));
    return 0;
}

int sg_schema_desc_parse(sg_schema_desc **out, const char *text, size_t len, sg_error *err)
{
    sg_schema_desc *d = NULL;
    int rc = 0;
    *out = NULL;
    if (!(d = sg_calloc(1, sizeof(*d))) || !(d->text = sg_malloc(len + 1))) {
        rc = nomem(err);
        goto done;
    }
    memcpy(d->text, text, len);
    d->text[len] = '\0';
    d->len = len;
    if ((rc = index_text(d, err)) < 0)
        goto done;
    *out = d;
    d = NULL;
done:
    sg_schema_desc_free(d);
    return rc;
}

/* Lines go into one buffer as they come, and are sorted once it stops
 * moving. */
typedef struct pending_line {
    size_t off;
    size_t len;
    size_t idlen;
} pending_line;

typedef struct collector {
    sg_buf buf;
    pending_line *lines;
    size_t nlines;
} collector;

static int collect_rows(collector *c, PGresult *res, const char *what, sg_error *err)
{
    int rows = PQntuples(res);
    for (int i = 0; i < rows; i++) {
        pending_line *grown, *line;
        if (PQgetisnull(res, i, 0))
            return sg_error_set(err, SG_E_INTERNAL, "the catalog query for %s gave a null name",
                                what);
        if (!(grown = sg_array_grow(c->lines, c->nlines, sizeof(*c->lines))))
            return nomem(err);
        c->lines = grown;
        line = &c->lines[c->nlines];
        line->off = c->buf.len;
        if (append_escaped(&c->buf, PQgetvalue(res, i, 0), err) < 0)
            return nomem(err);
        line->idlen = c->buf.len - line->off;
        /* An empty attribute list is no attribute list: the text has no
         * "name<TAB>" lines. */
        if (!PQgetisnull(res, i, 1) && *PQgetvalue(res, i, 1)) {
            if (sg_buf_append(&c->buf, "\t", 1, err) < 0 ||
                append_escaped(&c->buf, PQgetvalue(res, i, 1), err) < 0)
                return nomem(err);
        }
        line->len = c->buf.len - line->off;
        c->nlines++;
    }
    return 0;
}

/* Sorts the collected lines and writes the text: header, then each line. */
static int build_text(sg_schema_desc *d, const collector *c, sg_error *err)
{
    sg_buf text = {0};
    desc_line *sorted = NULL;
    int rc = 0;
    if (!(sorted = sg_calloc(c->nlines, sizeof(*sorted)))) {
        rc = nomem(err);
        goto done;
    }
    for (size_t i = 0; i < c->nlines; i++) {
        sorted[i].p = (const char *)c->buf.data + c->lines[i].off;
        sorted[i].len = c->lines[i].len;
        sorted[i].idlen = c->lines[i].idlen;
    }
    qsort(sorted, c->nlines, sizeof(*sorted), compare_lines);
    if (sg_buf_append(&text, header, strlen(header), err) < 0 ||
        sg_buf_append(&text, "\n", 1, err) < 0) {
        rc = nomem(err);
        goto done;
    }
    for (size_t i = 0; i < c->nlines; i++) {
        if (sg_buf_append(&text, sorted[i].p, sorted[i].len, err) < 0 ||
            sg_buf_append(&text, "\n", 1, err) < 0) {
            rc = nomem(err);
            goto done;
        }
    }
    if (sg_buf_terminate(&text, err) < 0) {
        rc = nomem(err);
        goto done;
    }
    d->text = (char *)text.data;
    d->len = text.len;
    text = (sg_buf){0};
    /* The same checks as for stored text, so that whatever is described can
     * be stored and read back; a failure here is a bug in the queries (two
     * objects under one name), not bad input. */
    if ((rc = index_text(d, err)) == SG_E_FORMAT) {
        sg_error_prefix(err, "describing the schema");
        err->code = rc = SG_E_INTERNAL;
    }
done:
    free(sorted);
    sg_buf_free(&text);
    return rc;
}

/* Sets every pinned setting for the current transaction only: they fix how
 * pg_get_expr and friends print constants (dates, intervals, floats) and
 * names (search_path). */
static int pin_settings_locally(PGconn *conn, sg_error *err)
{
    sg_buf sql = {0};
    const char **params = NULL;
    PGresult *res = NULL;
    size_t n = sg_pg_pinned_settings_count;
    int rc = 0;
    if (!(params = sg_calloc(2 * n, sizeof(*params))) ||
        sg_buf_append(&sql, "SELECT", 6, err) < 0) {
        rc = nomem(err);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        char item[64];
        int len = snprintf(item, sizeof(item), "%s pg_catalog.set_config($%zu, $%zu, true)",
                           i ? "," : "", 2 * i + 1, 2 * i + 2);
        if (sg_buf_append(&sql, item, (size_t)len, err) < 0) {
            rc = nomem(err);
            goto done;
        }
        params[2 * i] = sg_pg_pinned_settings[i].name;
        params[2 * i + 1] = sg_pg_pinned_settings[i].value;
    }
    if (sg_buf_terminate(&sql, err) < 0) {
        rc = nomem(err);
        goto done;
    }
    rc = sg_pg_query_params(&res, conn, (const char *)sql.data, (int)(2 * n), params, err);
done:
    PQclear(res);
    free(params);
    sg_buf_free(&sql);
    return rc;
}

/* Every query, in order; rc of the first failure. */
static int read_catalog(collector *c, PGconn *conn, sg_error *err)
{
    int version = PQserverVersion(conn);
    int rc;
    if (version < MIN_SERVER_VERSION)
        return sg_error_set(err, SG_E_DB,
                            "cannot describe the schema of a PostgreSQL %d.%d server: "
                            "version 14 or later is needed",
                            version / 10000, version % 10000 / 100);
    if ((rc = pin_settings_locally(conn, err)) < 0)
        return rc;
    for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
        PGresult *res = NULL;
        if ((rc = sg_pg_query(&res, conn, queries[i].sql, err)) < 0) {
            sg_error_prefix(err, "reading %s from the catalog", queries[i].what);
            return rc;
        }
        rc = collect_rows(c, res, queries[i].what, err);
        PQclear(res);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int sg_schema_describe(sg_schema_desc **out, PGconn *conn, sg_error *err)
{
    collector c = {{0}};
    sg_schema_desc *d = NULL;
    PGTransactionStatusType status = PQtransactionStatus(conn);
    bool own = status == PQTRANS_IDLE, started = false;
    int rc = 0;
    *out = NULL;
    if (status == PQTRANS_INERROR) {
        rc = sg_error_set(err, SG_E_DB,
                          "cannot describe the schema: the connection's transaction is aborted");
        goto done;
    }
    if (status != PQTRANS_IDLE && status != PQTRANS_INTRANS) {
        rc = sg_error_set(err, SG_E_DB, "cannot describe the schema: the connection is %s",
                          status == PQTRANS_ACTIVE ? "busy" : "not usable");
        if (PQstatus(conn) == CONNECTION_BAD && *PQerrorMessage(conn))
            sg_error_detail(err, "%s", PQerrorMessage(conn));
        goto done;
    }
    /* One snapshot for every query, so the description is one moment's
     * schema. Inside the caller's transaction, a savepoint confines the
     * settings and undoes a failure, so the caller can go on either way. */
    if ((rc = sg_pg_exec(conn,
                         own ? "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
                             : "SAVEPOINT shardgate_describe",
                         err)) < 0) {
        sg_error_prefix(err, "cannot describe the schema");
        goto done;
    }
    started = true;
    if ((rc = read_catalog(&c, conn, err)) < 0)
        goto done;
    if (!(d = sg_calloc(1, sizeof(*d)))) {
        rc = nomem(err);
        goto done;
    }
    if ((rc = build_text(d, &c, err)) < 0)
        goto done;
done:
    if (started) {
        /* Nothing was written; ending the transaction either way only
         * drops the settings and the snapshot. A failure here has nothing
         * to add to a first one, and the next statement will report it. */
        PGresult *res = PQexec(conn, own ? "ROLLBACK"
                                         : "ROLLBACK TO SAVEPOINT shardgate_describe;"
                                           " RELEASE SAVEPOINT shardgate_describe");
        if (rc == 0 && PQresultStatus(res) != PGRES_COMMAND_OK) {
            rc = sg_pg_result_error(res, conn, own ? "ROLLBACK" : "ROLLBACK TO SAVEPOINT", err);
            sg_error_prefix(err, "cannot describe the schema");
        }
        PQclear(res);
    }
    if (rc == 0) {
        *out = d;
        d = NULL;
    }
    sg_schema_desc_free(d);
    sg_buf_free(&c.buf);
    free(c.lines);
    return rc;
}

const char *sg_schema_desc_text(const sg_schema_desc *d)
{
    return d->text;
}

const char *sg_schema_desc_fingerprint(const sg_schema_desc *d)
{
    return d->fingerprint;
}

size_t sg_schema_desc_count(const sg_schema_desc *d)
{
    return d->nlines;
}

void sg_schema_desc_free(sg_schema_desc *d)
{
    if (!d)
        return;
    free(d->text);
    free(d->lines);
    free(d);
}

/* One allocation per change: the object, then the attributes before and
 * after, each NUL-terminated; `object` points at its start. */
static int add_change(sg_schema_change *out, sg_schema_change_kind kind, const desc_line *before,
                      const desc_line *after)
{
    const desc_line *any = before ? before : after;
    size_t blen = before && before->len > before->idlen ? before->len - before->idlen - 1 : 0;
    size_t alen = after && after->len > after->idlen ? after->len - after->idlen - 1 : 0;
    char *block = sg_malloc(any->idlen + blen + alen + 3), *p = block;
    if (!block)
        return SG_E_NOMEM;
    out->kind = kind;
    out->object = p;
    memcpy(p, any->p, any->idlen);
    p += any->idlen;
    *p++ = '\0';
    out->before = out->after = NULL;
    if (blen) {
        memcpy(p, before->p + before->idlen + 1, blen);
        out->before = p;
        p += blen;
        *p++ = '\0';
    }
    if (alen) {
        memcpy(p, after->p + after->idlen + 1, alen);
        out->after = p;
        p[alen] = '\0';
    }
    return 0;
}

int sg_schema_diff(sg_schema_change **out, size_t *count, const sg_schema_desc *before,
                   const sg_schema_desc *after, sg_error *err)
{
    sg_schema_change *changes = NULL;
    size_t n = 0, i = 0, j = 0;
    int rc = 0;
    *out = NULL;
    *count = 0;
    /* Both sides are sorted by object: one merge pass. */
    while (i < before->nlines || j < after->nlines) {
        const desc_line *b = i < before->nlines ? &before->lines[i] : NULL;
        const desc_line *a = j < after->nlines ? &after->lines[j] : NULL;
        int order = !b ? 1 : !a ? -1 : compare_identity(b, a);
        sg_schema_change *grown;
        if (order == 0) {
            i++;
            j++;
            if (b->len == a->len && memcmp(b->p, a->p, b->len) == 0)
                continue;
        } else if (order < 0) {
            a = NULL;
            i++;
        } else {
            b = NULL;
            j++;
        }
        if (!(grown = sg_array_grow(changes, n, sizeof(*changes)))) {
            rc = nomem(err);
            goto done;
        }
        changes = grown;
        if (add_change(&changes[n],
                       !b   ? SG_SCHEMA_ADDED
                       : !a ? SG_SCHEMA_REMOVED
                            : SG_SCHEMA_CHANGED,
                       b, a) < 0) {
            rc = nomem(err);
            goto done;
        }
        n++;
    }
    *out = changes;
    *count = n;
    changes = NULL;
    n = 0;
done:
    sg_schema_changes_free(changes, n);
    return rc;
}

void sg_schema_changes_free(sg_schema_change *changes, size_t count)
{
    if (!changes)
        return;
    for (size_t i = 0; i < count; i++)
        free((void *)changes[i].object);
    free(changes);
}

const char *sg_schema_change_kind_name(sg_schema_change_kind kind)
{
    switch (kind) {
    case SG_SCHEMA_ADDED:
        return "added";
    case SG_SCHEMA_REMOVED:
        return "removed";
    case SG_SCHEMA_CHANGED:
        return "changed";
    }
    return "?";
}
