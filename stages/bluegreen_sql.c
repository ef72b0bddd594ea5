#include "stages/bluegreen_sql.h"

#include <pg_query.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

/* ---- walking parse trees ---- */

static void min_location(const ProtobufCMessage *msg, void *ctx)
{
    int *first = ctx;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, "location");
    if (!f || f->type != PROTOBUF_C_TYPE_INT32)
        return;
    int location = *(const int32_t *)((const char *)msg + f->offset);
    if (location >= 0 && (*first < 0 || location < *first))
        *first = location;
}

/* Where the text of node starts: the smallest location in it (an operator
 * expression's own is its operator's), or -1 when it has none. */
static int first_location(const PgQuery__Node *node)
{
    int first = -1;
    sg_sql_walk(&node->base, min_location, &first);
    return first;
}

/* Whether rv names schema.name; unqualified names are in public, as lint
 * reads them. */
static bool names_table(const PgQuery__RangeVar *rv, const char *schema, const char *name)
{
    if (!rv)
        return false;
    const char *s = *rv->schemaname ? rv->schemaname : "public";
    return strcmp(rv->relname, name) == 0 && strcmp(s, schema) == 0;
}

/* ---- what a blue-green file may hold ---- */

/* Refusals that only name the statement: a blue-green file holds nothing of
 * the kind, and sg_bluegreen_refusal_message says what it may hold. */
enum {
    F_ALTER_OTHER,
    F_RENAME_OTHER,
    F_SET_SCHEMA_OTHER,
    F_INDEX_OTHER,
    F_UPDATE_OTHER,
    F_ALTER_INDEX,
    F_ALTER_VIEW,
    F_ALTER_MATVIEW,
    F_ALTER_SEQUENCE,
    F_ALTER_FOREIGN_TABLE,
    F_ALTER,
    F_RENAME,
    F_INSERT,
    F_DELETE,
    F_MERGE,
    F_SELECT,
    F_CREATE_TABLE,
    F_CREATE_TABLE_AS,
    F_CREATE_VIEW,
    F_CREATE_FUNCTION,
    F_CREATE_TRIGGER,
    F_CREATE_SEQUENCE,
    F_CREATE_SCHEMA,
    F_DROP_TABLE,
    F_DROP_INDEX,
    F_DROP,
    F_TRUNCATE,
    F_DO,
    F_CALL,
    F_COPY,
    F_LOCK,
    F_VACUUM,
    F_ANALYZE,
    F_CLUSTER,
    F_REINDEX,
    F_GRANT,
    F_COMMENT,
    F_TRANSACTION,
    F_SET,
    F_OTHER,
    F_COUNT
};

static const char *const foreign[F_COUNT] = {
    [F_ALTER_OTHER] = "ALTER TABLE of another table",
    [F_RENAME_OTHER] = "ALTER TABLE ... RENAME of another table",
    [F_SET_SCHEMA_OTHER] = "ALTER ... SET SCHEMA of another object",
    [F_INDEX_OTHER] = "CREATE INDEX on another table",
    [F_UPDATE_OTHER] = "UPDATE of another table",
    [F_ALTER_INDEX] = "ALTER INDEX",
    [F_ALTER_VIEW] = "ALTER VIEW",
    [F_ALTER_MATVIEW] = "ALTER MATERIALIZED VIEW",
    [F_ALTER_SEQUENCE] = "ALTER SEQUENCE",
    [F_ALTER_FOREIGN_TABLE] = "ALTER FOREIGN TABLE",
    [F_ALTER] = "ALTER of another object",
    [F_RENAME] = "ALTER ... RENAME of another object",
    [F_INSERT] = "INSERT",
    [F_DELETE] = "DELETE",
    [F_MERGE] = "MERGE",
    [F_SELECT] = "SELECT",
    [F_CREATE_TABLE] = "CREATE TABLE",
    [F_CREATE_TABLE_AS] = "CREATE TABLE AS",
    [F_CREATE_VIEW] = "CREATE VIEW",
    [F_CREATE_FUNCTION] = "CREATE FUNCTION",
    [F_CREATE_TRIGGER] = "CREATE TRIGGER",
    [F_CREATE_SEQUENCE] = "CREATE SEQUENCE",
    [F_CREATE_SCHEMA] = "CREATE SCHEMA",
    [F_DROP_TABLE] = "DROP TABLE",
    [F_DROP_INDEX] = "DROP INDEX",
    [F_DROP] = "DROP",
    [F_TRUNCATE] = "TRUNCATE",
    [F_DO] = "DO",
    [F_CALL] = "CALL",
    [F_COPY] = "COPY",
    [F_LOCK] = "LOCK",
    [F_VACUUM] = "VACUUM",
    [F_ANALYZE] = "ANALYZE",
    [F_CLUSTER] = "CLUSTER",
    [F_REINDEX] = "REINDEX",
    [F_GRANT] = "GRANT or REVOKE",
    [F_COMMENT] = "COMMENT",
    [F_TRANSACTION] = "a transaction command",
    [F_SET] = "SET",
    [F_OTHER] = "this statement",
};

static const char *foreign_statement(const PgQuery__Node *tree)
{
    switch (tree->node_case) {
    case PG_QUERY__NODE__NODE_ALTER_TABLE_STMT:
        switch (tree->alter_table_stmt->objtype) {
        case PG_QUERY__OBJECT_TYPE__OBJECT_INDEX:
            return foreign[F_ALTER_INDEX];
        case PG_QUERY__OBJECT_TYPE__OBJECT_VIEW:
            return foreign[F_ALTER_VIEW];
        case PG_QUERY__OBJECT_TYPE__OBJECT_MATVIEW:
            return foreign[F_ALTER_MATVIEW];
        case PG_QUERY__OBJECT_TYPE__OBJECT_SEQUENCE:
            return foreign[F_ALTER_SEQUENCE];
        case PG_QUERY__OBJECT_TYPE__OBJECT_FOREIGN_TABLE:
            return foreign[F_ALTER_FOREIGN_TABLE];
        default:
            return foreign[F_ALTER];
        }
    case PG_QUERY__NODE__NODE_ALTER_SEQ_STMT:
        return foreign[F_ALTER_SEQUENCE];
    case PG_QUERY__NODE__NODE_INSERT_STMT:
        return foreign[F_INSERT];
    case PG_QUERY__NODE__NODE_DELETE_STMT:
        return foreign[F_DELETE];
    case PG_QUERY__NODE__NODE_MERGE_STMT:
        return foreign[F_MERGE];
    case PG_QUERY__NODE__NODE_SELECT_STMT:
        return foreign[F_SELECT];
    case PG_QUERY__NODE__NODE_CREATE_STMT:
        return foreign[F_CREATE_TABLE];
    case PG_QUERY__NODE__NODE_CREATE_TABLE_AS_STMT:
        return foreign[F_CREATE_TABLE_AS];
    case PG_QUERY__NODE__NODE_VIEW_STMT:
        return foreign[F_CREATE_VIEW];
    case PG_QUERY__NODE__NODE_CREATE_FUNCTION_STMT:
        return foreign[F_CREATE_FUNCTION];
    case PG_QUERY__NODE__NODE_CREATE_TRIG_STMT:
        return foreign[F_CREATE_TRIGGER];
    case PG_QUERY__NODE__NODE_CREATE_SEQ_STMT:
        return foreign[F_CREATE_SEQUENCE];
    case PG_QUERY__NODE__NODE_CREATE_SCHEMA_STMT:
        return foreign[F_CREATE_SCHEMA];
    case PG_QUERY__NODE__NODE_DROP_STMT:
        switch (tree->drop_stmt->remove_type) {
        case PG_QUERY__OBJECT_TYPE__OBJECT_TABLE:
            return foreign[F_DROP_TABLE];
        case PG_QUERY__OBJECT_TYPE__OBJECT_INDEX:
            return foreign[F_DROP_INDEX];
        default:
            return foreign[F_DROP];
        }
    case PG_QUERY__NODE__NODE_TRUNCATE_STMT:
        return foreign[F_TRUNCATE];
    case PG_QUERY__NODE__NODE_DO_STMT:
        return foreign[F_DO];
    case PG_QUERY__NODE__NODE_CALL_STMT:
        return foreign[F_CALL];
    case PG_QUERY__NODE__NODE_COPY_STMT:
        return foreign[F_COPY];
    case PG_QUERY__NODE__NODE_LOCK_STMT:
        return foreign[F_LOCK];
    case PG_QUERY__NODE__NODE_VACUUM_STMT:
        return foreign[tree->vacuum_stmt->is_vacuumcmd ? F_VACUUM : F_ANALYZE];
    case PG_QUERY__NODE__NODE_CLUSTER_STMT:
        return foreign[F_CLUSTER];
    case PG_QUERY__NODE__NODE_REINDEX_STMT:
        return foreign[F_REINDEX];
    case PG_QUERY__NODE__NODE_GRANT_STMT:
        return foreign[F_GRANT];
    case PG_QUERY__NODE__NODE_COMMENT_STMT:
        return foreign[F_COMMENT];
    case PG_QUERY__NODE__NODE_TRANSACTION_STMT:
        return foreign[F_TRANSACTION];
    case PG_QUERY__NODE__NODE_VARIABLE_SET_STMT:
        return foreign[F_SET];
    default:
        return foreign[F_OTHER];
    }
}

/* What green cannot take, or must not get this way, is refused by name:
 * everything that is not on the allow-list of alter_refusal. */
#define REFUSED(what)                                                                              \
    "ALTER TABLE ... " what " has no place in a blue-green rebuild: put it in a file of its own"

static const char *subcommand_refusal(const PgQuery__AlterTableCmd *cmd, int *location)
{
    switch (cmd->subtype) {
    case PG_QUERY__ALTER_TABLE_TYPE__AT_AddConstraint:
        /* green's indexes are built after the copy: none is there to use */
        if (cmd->def && cmd->def->node_case == PG_QUERY__NODE__NODE_CONSTRAINT &&
            *cmd->def->constraint->indexname) {
            *location = cmd->def->constraint->location;
            return "ALTER TABLE ... ADD CONSTRAINT ... USING INDEX names an index that green "
                   "does not have before the copy: add the constraint without USING INDEX";
        }
        return NULL;
    case PG_QUERY__ALTER_TABLE_TYPE__AT_AddColumn:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_ColumnDefault:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_DropNotNull:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_SetNotNull:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_DropExpression:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_SetStatistics:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_SetOptions:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_ResetOptions:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_SetStorage:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_SetCompression:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_DropColumn:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_AlterConstraint:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_ValidateConstraint:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_DropConstraint:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_AlterColumnType:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_SetRelOptions:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_ResetRelOptions:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_AddIdentity:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_SetIdentity:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_DropIdentity:
        return NULL;
    case PG_QUERY__ALTER_TABLE_TYPE__AT_SetTableSpace:
        return REFUSED("SET TABLESPACE");
    case PG_QUERY__ALTER_TABLE_TYPE__AT_AttachPartition:
        return REFUSED("ATTACH PARTITION");
    case PG_QUERY__ALTER_TABLE_TYPE__AT_DetachPartition:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_DetachPartitionFinalize:
        return REFUSED("DETACH PARTITION");
    case PG_QUERY__ALTER_TABLE_TYPE__AT_AddInherit:
        return REFUSED("INHERIT");
    case PG_QUERY__ALTER_TABLE_TYPE__AT_DropInherit:
        return REFUSED("NO INHERIT");
    case PG_QUERY__ALTER_TABLE_TYPE__AT_AddOf:
        return REFUSED("OF");
    case PG_QUERY__ALTER_TABLE_TYPE__AT_DropOf:
        return REFUSED("NOT OF");
    case PG_QUERY__ALTER_TABLE_TYPE__AT_ChangeOwner:
        return REFUSED("OWNER TO");
    case PG_QUERY__ALTER_TABLE_TYPE__AT_EnableTrig:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_EnableAlwaysTrig:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_EnableReplicaTrig:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_EnableTrigAll:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_EnableTrigUser:
        return REFUSED("ENABLE TRIGGER");
    case PG_QUERY__ALTER_TABLE_TYPE__AT_DisableTrig:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_DisableTrigAll:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_DisableTrigUser:
        return REFUSED("DISABLE TRIGGER");
    case PG_QUERY__ALTER_TABLE_TYPE__AT_EnableRule:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_EnableAlwaysRule:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_EnableReplicaRule:
        return REFUSED("ENABLE RULE");
    case PG_QUERY__ALTER_TABLE_TYPE__AT_DisableRule:
        return REFUSED("DISABLE RULE");
    case PG_QUERY__ALTER_TABLE_TYPE__AT_EnableRowSecurity:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_DisableRowSecurity:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_ForceRowSecurity:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_NoForceRowSecurity:
        return REFUSED("ROW LEVEL SECURITY");
    case PG_QUERY__ALTER_TABLE_TYPE__AT_ReplicaIdentity:
        return REFUSED("REPLICA IDENTITY");
    case PG_QUERY__ALTER_TABLE_TYPE__AT_ClusterOn:
        return REFUSED("CLUSTER ON");
    case PG_QUERY__ALTER_TABLE_TYPE__AT_DropCluster:
        return REFUSED("SET WITHOUT CLUSTER");
    case PG_QUERY__ALTER_TABLE_TYPE__AT_SetLogged:
        return REFUSED("SET LOGGED");
    case PG_QUERY__ALTER_TABLE_TYPE__AT_SetUnLogged:
        return REFUSED("SET UNLOGGED");
    case PG_QUERY__ALTER_TABLE_TYPE__AT_SetAccessMethod:
        return REFUSED("SET ACCESS METHOD");
    case PG_QUERY__ALTER_TABLE_TYPE__AT_DropOids:
        return REFUSED("SET WITHOUT OIDS");
    case PG_QUERY__ALTER_TABLE_TYPE__AT_GenericOptions:
    case PG_QUERY__ALTER_TABLE_TYPE__AT_AlterColumnGenericOptions:
        return REFUSED("OPTIONS");
    default:
        /* the forms the server makes for itself (AT_*Recurse, AT_ReAdd*):
         * the parser never gives them */
        return REFUSED("with this subcommand");
    }
}

static const char *alter_refusal(const PgQuery__Node *tree, const char *schema, const char *name,
                                 int *location)
{
    const PgQuery__AlterTableStmt *s = tree->alter_table_stmt;
    if (s->objtype != PG_QUERY__OBJECT_TYPE__OBJECT_TABLE)
        return foreign_statement(tree);
    if (!names_table(s->relation, schema, name)) {
        *location = s->relation ? s->relation->location : -1;
        return foreign[F_ALTER_OTHER];
    }
    for (size_t i = 0; i < s->n_cmds; i++) {
        if (s->cmds[i]->node_case != PG_QUERY__NODE__NODE_ALTER_TABLE_CMD)
            continue;
        const char *why = subcommand_refusal(s->cmds[i]->alter_table_cmd, location);
        if (why)
            return why;
    }
    return NULL;
}

static const char *rename_refusal(const PgQuery__RenameStmt *s, const char *schema,
                                  const char *name, int *location)
{
    bool ours = names_table(s->relation, schema, name);
    if (s->relation && !ours)
        *location = s->relation->location;
    switch (s->rename_type) {
    case PG_QUERY__OBJECT_TYPE__OBJECT_COLUMN:
        if (s->relation_type != PG_QUERY__OBJECT_TYPE__OBJECT_TABLE)
            return foreign[F_RENAME];
        return ours ? NULL : foreign[F_RENAME_OTHER];
    case PG_QUERY__OBJECT_TYPE__OBJECT_TABCONSTRAINT:
        return ours ? NULL : foreign[F_RENAME_OTHER];
    case PG_QUERY__OBJECT_TYPE__OBJECT_TABLE:
        return ours ? "ALTER TABLE ... RENAME TO renames the table, which the swap keeps as it is: "
                      "rename it in a file of its own"
                    : foreign[F_RENAME_OTHER];
    default:
        return foreign[F_RENAME];
    }
}

static const char *index_refusal(const PgQuery__IndexStmt *s, const char *schema, const char *name,
                                 int *location)
{
    if (!names_table(s->relation, schema, name)) {
        *location = s->relation ? s->relation->location : -1;
        return foreign[F_INDEX_OTHER];
    }
    /* a failed concurrent build leaves an INVALID index that a retry must
     * drop first: only a name lets the engine find it */
    if (!*s->idxname)
        return "CREATE INDEX without a name: green's index is built CONCURRENTLY, and an invalid "
               "one left by a failed build can only be dropped by name";
    return NULL;
}

static void find_sublink(const ProtobufCMessage *msg, void *ctx)
{
    int *location = ctx;
    if (*location < 0 && msg->descriptor == &pg_query__sub_link__descriptor)
        *location = ((const PgQuery__SubLink *)msg)->location;
}

static const char *update_refusal(const PgQuery__UpdateStmt *s, const char *schema,
                                  const char *name, int *location)
{
    if (!names_table(s->relation, schema, name)) {
        *location = s->relation ? s->relation->location : -1;
        return foreign[F_UPDATE_OTHER];
    }
    if (s->with_clause) {
        *location = s->with_clause->location;
        return "WITH ... UPDATE: an UPDATE of a blue-green file fills columns from blue's row "
               "alone";
    }
    if (s->where_clause) {
        *location = first_location(s->where_clause);
        return "UPDATE ... WHERE: an UPDATE of a blue-green file fills the column in every row";
    }
    if (s->n_from_clause) {
        *location = first_location(s->from_clause[0]);
        return "UPDATE ... FROM: an UPDATE of a blue-green file fills columns from blue's row "
               "alone";
    }
    if (s->n_returning_list) {
        *location = first_location(s->returning_list[0]);
        return "UPDATE ... RETURNING: an UPDATE of a blue-green file is not run, so it returns "
               "nothing";
    }
    for (size_t i = 0; i < s->n_target_list; i++) {
        const PgQuery__ResTarget *target = s->target_list[i]->res_target;
        *location = target->location;
        if (target->val->node_case == PG_QUERY__NODE__NODE_MULTI_ASSIGN_REF)
            return "UPDATE ... SET (...) = (...): a fill sets one column from one expression";
        if (target->n_indirection)
            return "UPDATE ... SET of an array element or a field: a fill sets a whole column";
        if (target->val->node_case == PG_QUERY__NODE__NODE_SET_TO_DEFAULT)
            return "UPDATE ... SET column = DEFAULT: a fill needs an expression (leave the column "
                   "out and green's rows get its default)";
        /* like FROM: what other tables hold when a trigger runs is no
         * function of the row, and the name scopes of a subquery would make
         * the fill's columns ambiguous once unqualified */
        *location = -1;
        sg_sql_walk(&target->val->base, find_sublink, location);
        if (*location >= 0)
            return "UPDATE ... SET with a subquery: an UPDATE of a blue-green file fills columns "
                   "from blue's row alone";
    }
    *location = -1;
    return NULL;
}

const char *sg_bluegreen_refusal(const PgQuery__Node *tree, const char *schema, const char *name,
                                 int *location)
{
    *location = -1;
    switch (tree->node_case) {
    case PG_QUERY__NODE__NODE_ALTER_TABLE_STMT:
        return alter_refusal(tree, schema, name, location);
    case PG_QUERY__NODE__NODE_RENAME_STMT:
        return rename_refusal(tree->rename_stmt, schema, name, location);
    case PG_QUERY__NODE__NODE_ALTER_OBJECT_SCHEMA_STMT: {
        const PgQuery__AlterObjectSchemaStmt *s = tree->alter_object_schema_stmt;
        if (s->object_type == PG_QUERY__OBJECT_TYPE__OBJECT_TABLE &&
            names_table(s->relation, schema, name))
            return "ALTER TABLE ... SET SCHEMA moves the table: move it in a file of its own";
        *location = s->relation ? s->relation->location : -1;
        return foreign[F_SET_SCHEMA_OTHER];
    }
    case PG_QUERY__NODE__NODE_INDEX_STMT:
        return index_refusal(tree->index_stmt, schema, name, location);
    case PG_QUERY__NODE__NODE_UPDATE_STMT:
        return update_refusal(tree->update_stmt, schema, name, location);
    default:
        return foreign_statement(tree);
    }
}

void sg_bluegreen_refusal_message(char *buf, size_t size, const char *refusal, const char *table)
{
    for (size_t i = 0; i < F_COUNT; i++) {
        if (refusal == foreign[i]) {
            snprintf(buf, size,
                     "%s: a mode=bluegreen file for %s may hold only ALTER TABLE, CREATE INDEX "
                     "and UPDATE ... SET of that table",
                     refusal, table);
            return;
        }
    }
    snprintf(buf, size, "%s", refusal);
}

/* ---- deparsing ---- */

static int nomem(sg_error *err)
{
    return sg_error_set(err, SG_E_NOMEM, "out of memory");
}

/* Puts value (ours) into the string field of msg, freeing what was there the
 * way protobuf-c frees it: an empty string is its static default. */
static void set_string(ProtobufCMessage *msg, const char *field, char *value)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, field);
    char **slot = (char **)((char *)msg + f->offset);
    if (*slot != f->default_value)
        free(*slot);
    *slot = value;
}

/* Where a node was written says nothing of what it means: with locations
 * zeroed, two trees are the same SQL when they pack to the same bytes. */
static void clear_location(const ProtobufCMessage *msg, void *ctx)
{
    (void)ctx;
    if (msg->descriptor == &pg_query__raw_stmt__descriptor) {
        PgQuery__RawStmt *raw = (PgQuery__RawStmt *)msg; /* of our own tree */
        raw->stmt_location = raw->stmt_len = 0;
        return;
    }
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, "location");
    if (f && f->type == PROTOBUF_C_TYPE_INT32)
        *(int32_t *)((char *)msg + f->offset) = 0;
}

typedef struct packed {
    uint8_t *data;
    size_t len;
} packed;

static int pack(packed *out, PgQuery__ParseResult *tree, sg_error *err)
{
    sg_sql_walk(&tree->base, clear_location, NULL);
    out->len = pg_query__parse_result__get_packed_size(tree);
    if (!(out->data = sg_malloc(out->len ? out->len : 1)))
        return nomem(err);
    pg_query__parse_result__pack(tree, out->data);
    return 0;
}

/* Whether text parses to the tree packed in want. */
static int parses_to(bool *same, const char *text, const packed *want, sg_error *err)
{
    PgQueryProtobufParseResult parsed = pg_query_parse_protobuf(text);
    PgQuery__ParseResult *tree = NULL;
    packed got = {NULL, 0};
    int rc = 0;
    *same = false;
    if (parsed.error)
        goto done;
    tree = pg_query__parse_result__unpack(&sg_sql_tree_allocator, parsed.parse_tree.len,
                                          (const uint8_t *)parsed.parse_tree.data);
    if (!tree) {
        rc = nomem(err);
        goto done;
    }
    if ((rc = pack(&got, tree, err)) < 0)
        goto done;
    *same = got.len == want->len && memcmp(got.data, want->data, got.len) == 0;
done:
    free(got.data);
    if (tree)
        pg_query__parse_result__free_unpacked(tree, &sg_sql_tree_allocator);
    pg_query_free_protobuf_parse_result(parsed);
    return rc;
}

static int deparse_packed(char **out, const packed *tree, const char *what, sg_error *err)
{
    PgQueryDeparseResult d =
        pg_query_deparse_protobuf((PgQueryProtobuf){.len = tree->len, .data = (char *)tree->data});
    int rc = 0;
    *out = NULL;
    if (d.error)
        rc =
            sg_error_set(err, SG_E_INTERNAL, "cannot rewrite %s: libpg_query cannot deparse it: %s",
                         what, d.error->message);
    else if (!(*out = sg_strdup(d.query)))
        rc = nomem(err);
    pg_query_free_deparse_result(d);
    return rc;
}

/* libpg_query before 15-4.2 (Debian's is 15-4.0) writes index and constraint
 * names without quotes, so "Orders_Pkey" would come out as orders_pkey:
 * quoted in the tree, they come out right. */
static void quote_names_visit(const ProtobufCMessage *msg, void *ctx)
{
    bool *failed = ctx;
    const char *field = msg->descriptor == &pg_query__index_stmt__descriptor   ? "idxname"
                        : msg->descriptor == &pg_query__constraint__descriptor ? "conname"
                                                                               : NULL;
    if (!field || *failed)
        return;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, field);
    const char *name = *(char *const *)((const char *)msg + f->offset);
    size_t len = 3;
    if (!*name)
        return;
    for (const char *p = name; *p; p++)
        len += *p == '"' ? 2 : 1;
    char *quoted = sg_malloc(len), *q = quoted;
    if (!quoted) {
        *failed = true;
        return;
    }
    *q++ = '"';
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            *q++ = '"';
        *q++ = *p;
    }
    *q++ = '"';
    *q = '\0';
    set_string((ProtobufCMessage *)msg, field, quoted); /* of our own tree */
}

/* The text of tree, one statement, as libpg_query deparses it, checked by
 * parsing it back: DDL that says something else than the tree must never
 * run. The tree's locations are cleared on the way, and its index and
 * constraint names may come back quoted. */
static int deparse(char **out, PgQuery__ParseResult *tree, const char *what, sg_error *err)
{
    packed want = {NULL, 0}, quoted = {NULL, 0};
    char *text = NULL;
    bool same = false, failed = false;
    int rc;
    *out = NULL;
    if ((rc = pack(&want, tree, err)) < 0 || (rc = deparse_packed(&text, &want, what, err)) < 0 ||
        (rc = parses_to(&same, text, &want, err)) < 0)
        goto done;
    if (!same) {
        sg_sql_walk(&tree->base, quote_names_visit, &failed);
        if (failed) {
            rc = nomem(err);
            goto done;
        }
        free(text);
        text = NULL;
        if ((rc = pack(&quoted, tree, err)) < 0 ||
            (rc = deparse_packed(&text, &quoted, what, err)) < 0 ||
            (rc = parses_to(&same, text, &want, err)) < 0)
            goto done;
    }
    if (!same) {
        rc = sg_error_set(err, SG_E_INTERNAL,
                          "cannot rewrite %s: libpg_query's deparser changes what it means", what);
        sg_error_detail(err, "deparsed: %.400s", text);
        sg_error_hint(err, "write the statement another way");
        goto done;
    }
    *out = text;
    text = NULL;
done:
    free(text);
    free(want.data);
    free(quoted.data);
    return rc;
}

typedef struct retarget {
    const char *from_schema, *name, *to_schema;
    bool failed; /* an allocation */
} retarget;

static void retarget_visit(const ProtobufCMessage *msg, void *ctx)
{
    retarget *r = ctx;
    if (msg->descriptor != &pg_query__range_var__descriptor)
        return;
    PgQuery__RangeVar *rv = (PgQuery__RangeVar *)msg; /* of our own copy */
    if (r->failed || !names_table(rv, r->from_schema, r->name))
        return;
    char *schema = sg_strdup(r->to_schema);
    if (!schema) {
        r->failed = true;
        return;
    }
    /* freed the way protobuf-c frees it: an empty string is its static default */
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, "schemaname");
    if (rv->schemaname != f->default_value)
        free(rv->schemaname);
    rv->schemaname = schema;
}

int sg_sql_rewrite_table(char **out, const char *sql, const char *from_schema, const char *name,
                         const char *to_schema, bool concurrently, sg_error *err)
{
    PgQueryProtobufParseResult parsed = {0};
    PgQuery__ParseResult *tree = NULL;
    retarget r = {from_schema, name, to_schema, false};
    char what[200];
    int rc;
    *out = NULL;
    parsed = pg_query_parse_protobuf(sql);
    if (parsed.error) {
        /* PostgreSQL's own wording: the cursor counts characters */
        rc = sg_error_set(err, SG_E_FORMAT, "SQL to rewrite onto %s.%s: %s at character %d",
                          to_schema, name, parsed.error->message, parsed.error->cursorpos);
        sg_error_detail(err, "statement: %.300s", sql);
        goto done;
    }
    tree = pg_query__parse_result__unpack(&sg_sql_tree_allocator, parsed.parse_tree.len,
                                          (const uint8_t *)parsed.parse_tree.data);
    if (!tree) {
        rc = nomem(err);
        goto done;
    }
    if (tree->n_stmts != 1) {
        rc = sg_error_set(err, SG_E_FORMAT,
                          "SQL to rewrite onto %s.%s holds %zu statements, not one", to_schema,
                          name, tree->n_stmts);
        sg_error_detail(err, "SQL: %.300s", sql);
        goto done;
    }
    PgQuery__Node *stmt = tree->stmts[0]->stmt;
    sg_sql_walk(&stmt->base, retarget_visit, &r);
    if (r.failed) {
        rc = nomem(err);
        goto done;
    }
    if (concurrently && stmt->node_case == PG_QUERY__NODE__NODE_INDEX_STMT)
        stmt->index_stmt->concurrent = true;
    snprintf(what, sizeof(what), "statement onto %s.%s", to_schema, name);
    rc = deparse(out, tree, what, err);
done:
    if (tree)
        pg_query__parse_result__free_unpacked(tree, &sg_sql_tree_allocator);
    pg_query_free_protobuf_parse_result(parsed);
    return rc;
}

/* ---- fill expressions ---- */

/* The qualifier that names the table in a fill's expression: its alias, or
 * else its name, alone or after its schema. */
typedef struct unqualify {
    const char *alias, *schema, *name;
} unqualify;

static bool string_is(const PgQuery__Node *node, const char *s)
{
    return node->node_case == PG_QUERY__NODE__NODE_STRING && strcmp(node->string->sval, s) == 0;
}

/* A fill is evaluated on blue's row, in the copy and in triggers, where the
 * table's name or alias is not in scope: drop it from the columns it
 * qualifies. */
static void unqualify_visit(const ProtobufCMessage *msg, void *ctx)
{
    const unqualify *u = ctx;
    if (msg->descriptor != &pg_query__column_ref__descriptor)
        return;
    PgQuery__ColumnRef *ref = (PgQuery__ColumnRef *)msg; /* of our own copy */
    size_t drop = 0;
    if (ref->n_fields < 2 ||
        ref->fields[ref->n_fields - 1]->node_case != PG_QUERY__NODE__NODE_STRING)
        return;
    if (u->alias) {
        drop = ref->n_fields == 2 && string_is(ref->fields[0], u->alias);
    } else if (ref->n_fields == 2 && string_is(ref->fields[0], u->name)) {
        drop = 1;
    } else if (ref->n_fields == 3 && string_is(ref->fields[0], u->schema) &&
               string_is(ref->fields[1], u->name)) {
        drop = 2;
    }
    for (size_t i = 0; i < drop; i++)
        pg_query__node__free_unpacked(ref->fields[i], &sg_sql_tree_allocator);
    memmove(ref->fields, ref->fields + drop, (ref->n_fields - drop) * sizeof(*ref->fields));
    ref->n_fields -= drop;
}

/* The text of expression expr as the one target of a SELECT. */
static int deparse_target(char **out, PgQuery__Node *expr, sg_error *err)
{
    PgQuery__ResTarget target = PG_QUERY__RES_TARGET__INIT;
    PgQuery__Node target_node = PG_QUERY__NODE__INIT;
    PgQuery__Node *targets[1] = {&target_node};
    PgQuery__SelectStmt select = PG_QUERY__SELECT_STMT__INIT;
    PgQuery__Node stmt = PG_QUERY__NODE__INIT;
    PgQuery__RawStmt raw = PG_QUERY__RAW_STMT__INIT;
    PgQuery__RawStmt *raws[1] = {&raw};
    PgQuery__ParseResult tree = PG_QUERY__PARSE_RESULT__INIT;
    target.val = expr;
    target.location = -1;
    target_node.node_case = PG_QUERY__NODE__NODE_RES_TARGET;
    target_node.res_target = &target;
    select.n_target_list = 1;
    select.target_list = targets;
    select.op = PG_QUERY__SET_OPERATION__SETOP_NONE;
    select.limit_option = PG_QUERY__LIMIT_OPTION__LIMIT_OPTION_DEFAULT;
    stmt.node_case = PG_QUERY__NODE__NODE_SELECT_STMT;
    stmt.select_stmt = &select;
    raw.stmt = &stmt;
    tree.version = PG_VERSION_NUM;
    tree.n_stmts = 1;
    tree.stmts = raws;
    return deparse(out, &tree, "fill expression", err);
}

/* The text of expression expr, deparsed on its own: libpg_query deparses
 * statements only, so it goes in as a SELECT whose keyword is cut off. */
static int deparse_expression(char **out, const PgQuery__Node *expr, const unqualify *u,
                              sg_error *err)
{
    static const char select[] = "SELECT ";
    PgQuery__Node *copy = NULL;
    char *text = NULL;
    size_t len = pg_query__node__get_packed_size(expr);
    uint8_t *buf = sg_malloc(len ? len : 1);
    int rc;
    *out = NULL;
    /* a copy to change: the file's tree stays as parsed */
    if (!buf) {
        rc = nomem(err);
        goto done;
    }
    pg_query__node__pack(expr, buf);
    if (!(copy = pg_query__node__unpack(&sg_sql_tree_allocator, len, buf))) {
        rc = nomem(err);
        goto done;
    }
    sg_sql_walk(&copy->base, unqualify_visit, (void *)u);
    if ((rc = deparse_target(&text, copy, err)) < 0)
        goto done;
    if (strncmp(text, select, sizeof(select) - 1) != 0) {
        rc = sg_error_set(err, SG_E_INTERNAL, "deparsed fill expression \"%s\" is not a SELECT",
                          text);
        goto done;
    }
    memmove(text, text + sizeof(select) - 1, strlen(text) - (sizeof(select) - 1) + 1);
    *out = text;
    text = NULL;
done:
    free(text);
    if (copy)
        pg_query__node__free_unpacked(copy, &sg_sql_tree_allocator);
    free(buf);
    return rc;
}

/* ---- the script ---- */

typedef struct builder {
    sg_bluegreen_script *s;
    const sg_migration *m;
    const sg_sql_stmt *stmt;
    char *schema, *name; /* of the file's table */
    const char *green_schema;
    sg_error *err;
} builder;

/* The line and column in the file of a location of stmt's tree (-1: the
 * statement's first token). */
static void stmt_position(const sg_sql_stmt *stmt, int location, unsigned *line, unsigned *column)
{
    *line = stmt->line;
    *column = stmt->column;
    if (location < 0 || (size_t)location < stmt->offset ||
        (size_t)location - stmt->offset > stmt->len)
        return;
    sg_sql_position(stmt->text, (size_t)location - stmt->offset, stmt->line, line, column);
    if (*line == stmt->line)
        *column += stmt->column - 1;
}

static int add_string(char ***items, size_t *count, char *text, sg_error *err)
{
    char **grown = sg_array_grow(*items, *count, sizeof(**items));
    if (!grown) {
        free(text);
        return nomem(err);
    }
    *items = grown;
    grown[(*count)++] = text;
    return 0;
}

/* Adds the statement, rewritten onto green, to items. */
static int add_rewritten(builder *b, char ***items, size_t *count, bool concurrently)
{
    char *sql = sg_strndup(b->stmt->text, b->stmt->len), *text = NULL;
    int rc;
    if (!sql)
        return nomem(b->err);
    rc =
        sg_sql_rewrite_table(&text, sql, b->schema, b->name, b->green_schema, concurrently, b->err);
    free(sql);
    if (rc < 0)
        return rc;
    return add_string(items, count, text, b->err);
}

static sg_bluegreen_fill *find_fill(const sg_bluegreen_script *s, const char *column)
{
    for (size_t i = 0; i < s->nfills; i++)
        if (strcmp(s->fills[i].column, column) == 0)
            return &s->fills[i];
    return NULL;
}

/* Fills column with expr, over an earlier fill of the same column. */
static int add_fill(builder *b, const char *column, const PgQuery__Node *expr, const char *alias,
                    int location)
{
    sg_bluegreen_script *s = b->s;
    unqualify u = {alias, b->schema, b->name};
    char *expression = NULL;
    int rc = deparse_expression(&expression, expr, &u, b->err);
    unsigned line, col;
    if (rc < 0)
        return rc;
    stmt_position(b->stmt, location, &line, &col);
    sg_bluegreen_fill *fill = find_fill(s, column);
    if (fill) {
        free(fill->expression);
        fill->expression = expression;
        fill->line = line;
        return 0;
    }
    sg_bluegreen_fill *grown = sg_array_grow(s->fills, s->nfills, sizeof(*s->fills));
    if (!grown) {
        free(expression);
        return nomem(b->err);
    }
    s->fills = grown;
    fill = &s->fills[s->nfills];
    if (!(fill->column = sg_strdup(column))) {
        free(expression);
        return nomem(b->err);
    }
    fill->expression = expression;
    fill->line = line;
    s->nfills++;
    return 0;
}

static int add_update(builder *b, const PgQuery__UpdateStmt *u)
{
    const char *alias = u->relation->alias ? u->relation->alias->aliasname : NULL;
    for (size_t i = 0; i < u->n_target_list; i++) {
        const PgQuery__ResTarget *target = u->target_list[i]->res_target;
        int rc = add_fill(b, target->name, target->val, alias, target->location);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void drop_fill(sg_bluegreen_script *s, const char *column)
{
    sg_bluegreen_fill *fill = find_fill(s, column);
    if (!fill)
        return;
    free(fill->column);
    free(fill->expression);
    size_t at = (size_t)(fill - s->fills);
    memmove(fill, fill + 1, (s->nfills - at - 1) * sizeof(*fill));
    s->nfills--;
}

/* What the subcommands of an ALTER TABLE tell the fills: a USING expression
 * computes the column from blue's row in the copy and the triggers as well
 * (on an empty green, the ALTER itself converts nothing), and a dropped
 * column has nothing left to fill. */
static int learn_alter(builder *b, const PgQuery__AlterTableStmt *s)
{
    for (size_t i = 0; i < s->n_cmds; i++) {
        if (s->cmds[i]->node_case != PG_QUERY__NODE__NODE_ALTER_TABLE_CMD)
            continue;
        const PgQuery__AlterTableCmd *cmd = s->cmds[i]->alter_table_cmd;
        if (cmd->subtype == PG_QUERY__ALTER_TABLE_TYPE__AT_DropColumn) {
            drop_fill(b->s, cmd->name);
        } else if (cmd->subtype == PG_QUERY__ALTER_TABLE_TYPE__AT_AlterColumnType && cmd->def &&
                   cmd->def->node_case == PG_QUERY__NODE__NODE_COLUMN_DEF &&
                   cmd->def->column_def->raw_default) {
            const PgQuery__Node *expr = cmd->def->column_def->raw_default;
            int rc = add_fill(b, cmd->name, expr, NULL, first_location(expr));
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* Records a column rename; fills made before it follow the column to its new
 * name, since theirs is green's. */
static int add_rename(builder *b, const PgQuery__RenameStmt *r)
{
    sg_bluegreen_script *s = b->s;
    sg_bluegreen_fill *fill = find_fill(s, r->subname);
    char *to = NULL;
    if (fill) {
        if (!(to = sg_strdup(r->newname)))
            return nomem(b->err);
        free(fill->column);
        fill->column = to;
    }
    sg_bluegreen_rename *grown = sg_array_grow(s->renames, s->nrenames, sizeof(*s->renames));
    if (!grown)
        return nomem(b->err);
    s->renames = grown;
    sg_bluegreen_rename *rename = &s->renames[s->nrenames];
    rename->from = sg_strdup(r->subname);
    rename->to = sg_strdup(r->newname);
    if (!rename->from || !rename->to) {
        free(rename->from);
        free(rename->to);
        return nomem(b->err);
    }
    s->nrenames++;
    return 0;
}

static int add_stmt(builder *b)
{
    const PgQuery__Node *tree = b->stmt->tree;
    sg_bluegreen_script *s = b->s;
    int location, rc;
    const char *why = sg_bluegreen_refusal(tree, b->schema, b->name, &location);
    if (why) {
        char message[512];
        unsigned line, column;
        stmt_position(b->stmt, location, &line, &column);
        sg_bluegreen_refusal_message(message, sizeof(message), why, b->m->bluegreen_table);
        return sg_error_set(b->err, SG_E_FORMAT, "%s:%u:%u: %s", b->m->file, line, column, message);
    }
    switch (tree->node_case) {
    case PG_QUERY__NODE__NODE_ALTER_TABLE_STMT:
        if ((rc = add_rewritten(b, &s->before, &s->nbefore, false)) == 0)
            rc = learn_alter(b, tree->alter_table_stmt);
        break;
    case PG_QUERY__NODE__NODE_RENAME_STMT:
        if ((rc = add_rewritten(b, &s->before, &s->nbefore, false)) == 0 &&
            tree->rename_stmt->rename_type == PG_QUERY__OBJECT_TYPE__OBJECT_COLUMN)
            rc = add_rename(b, tree->rename_stmt);
        break;
    case PG_QUERY__NODE__NODE_INDEX_STMT:
        rc = add_rewritten(b, &s->after, &s->nafter, true);
        break;
    case PG_QUERY__NODE__NODE_UPDATE_STMT:
        rc = add_update(b, tree->update_stmt);
        break;
    default:
        /* sg_bluegreen_refusal lets no other statement through */
        rc = sg_error_set(b->err, SG_E_INTERNAL, "statement not handled");
        break;
    }
    if (rc < 0 && rc != SG_E_NOMEM)
        sg_error_prefix(b->err, "%s:%u:%u", b->m->file, b->stmt->line, b->stmt->column);
    return rc;
}

int sg_bluegreen_script_build(sg_bluegreen_script **out, const sg_migration *m,
                              const sg_migration_section *section, const char *green_schema,
                              sg_error *err)
{
    builder b = {.m = m, .green_schema = green_schema, .err = err};
    const char *dot = m->bluegreen_table ? strchr(m->bluegreen_table, '.') : NULL;
    int rc = 0;
    *out = NULL;
    if (m->mode != SG_MIGRATION_BLUEGREEN || !dot) {
        rc = sg_error_set(err, SG_E_USAGE,
                          "%s is not a mode=bluegreen file with table=SCHEMA.TABLE", m->file);
        goto done;
    }
    if (!(b.s = sg_calloc(1, sizeof(*b.s))) ||
        !(b.schema = sg_strndup(m->bluegreen_table, (size_t)(dot - m->bluegreen_table))) ||
        !(b.name = sg_strdup(dot + 1))) {
        rc = nomem(err);
        goto done;
    }
    size_t count = section->script ? sg_sql_script_count(section->script) : 0;
    for (size_t i = 0; i < count && rc == 0; i++) {
        b.stmt = sg_sql_script_stmt(section->script, i);
        rc = add_stmt(&b);
    }
    if (rc < 0)
        goto done;
    *out = b.s;
    b.s = NULL;
done:
    sg_bluegreen_script_free(b.s);
    free(b.schema);
    free(b.name);
    return rc;
}

void sg_bluegreen_script_free(sg_bluegreen_script *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nbefore; i++)
        free(s->before[i]);
    free(s->before);
    for (size_t i = 0; i < s->nafter; i++)
        free(s->after[i]);
    free(s->after);
    for (size_t i = 0; i < s->nfills; i++) {
        free(s->fills[i].column);
        free(s->fills[i].expression);
    }
    free(s->fills);
    for (size_t i = 0; i < s->nrenames; i++) {
        free(s->renames[i].from);
        free(s->renames[i].to);
    }
    free(s->renames);
    free(s);
}
