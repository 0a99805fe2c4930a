/* openapi.c — GET /openapi.json: an OpenAPI 3.0.3 document built from the registry (named
 * queries, route aliases, bulk endpoints, Lua handlers) and from what the database described at
 * start-up (parameter types, result columns), plus the fixed paths (/batch, /health..., /metrics,
 * /admin/...). PostgreSQL types map to JSON Schema as the gateway converts them (docs/http-api.md,
 * "Results"). */
#include "openapi.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "pgtype.h"
#include "util.h"
#include "worker.h"

/* --- PostgreSQL types -> JSON Schema --------------------------------------------------------- */

/* Where a value travels: a JSON request body, a URL (path or query string: always text) or a
 * result row. */
enum where { IN_BODY, IN_URL, IN_RESULT };

static json_t *typed(const char *type, const char *format)
{
    json_t *s = json_pack("{s:s}", "type", type);
    if (format) json_object_set_new(s, "format", json_string(format));
    return s;
}

/* anyOf the two; null is allowed by each branch when nullable (so anyOf, not oneOf). */
static json_t *either(json_t *a, json_t *b, bool nullable)
{
    if (nullable) {
        json_object_set_new(a, "nullable", json_true());
        json_object_set_new(b, "nullable", json_true());
    }
    return json_pack("{s:[o,o]}", "anyOf", a, b);
}

static json_t *described(json_t *s, const char *text)
{
    json_object_set_new(s, "description", json_string(text));
    return s;
}

static json_t *type_schema(Oid t, enum where where);

/* The schema of a value of type t; nullable: null is allowed too (never for a URL). */
static json_t *type_schema_n(Oid t, enum where where, bool nullable)
{
    bool url = where == IN_URL;
    nullable = nullable && !url;
    json_t *s;
    Oid elem = pgtype_array_elem(t);
    if (t == 0) {
        /* Not described: the database was not reachable at start-up. */
        s = url ? typed("string", NULL) : json_object();
        described(s, "type not known: the database was not reachable when the gateway started");
        nullable = false;
    } else if (elem != 0) {
        if (url) {
            s = described(typed("string", NULL), "a PostgreSQL array literal, e.g. {1,2,3}");
        } else {
            s = json_pack("{s:s,s:o}", "type", "array", "items", type_schema(elem, where));
        }
    } else {
        switch (t) {
        case PGT_BOOL:
            s = typed("boolean", NULL);
            break;
        case PGT_INT2:
            s = json_pack("{s:s,s:s,s:i,s:i}", "type", "integer", "format", "int32", "minimum", -32768,
                          "maximum", 32767);
            break;
        case PGT_INT4:
            s = typed("integer", "int32");
            break;
        case PGT_OID:
            s = json_pack("{s:s,s:s,s:i}", "type", "integer", "format", "int64", "minimum", 0);
            break;
        case PGT_INT8:
            /* Beyond 2^53 a result is a string, so that no digit is lost. */
            if (url)
                s = typed("integer", "int64");
            else {
                s = either(typed("integer", "int64"),
                           json_pack("{s:s,s:s}", "type", "string", "pattern", "^-?[0-9]+$"), nullable);
                nullable = false;
            }
            break;
        case PGT_FLOAT4:
        case PGT_FLOAT8:
            if (where == IN_RESULT) { /* NaN and the infinities are strings */
                s = either(
                    typed("number", t == PGT_FLOAT4 ? "float" : "double"),
                    json_pack("{s:s,s:[s,s,s]}", "type", "string", "enum", "NaN", "Infinity", "-Infinity"),
                    nullable);
                nullable = false;
            } else {
                s = typed("number", t == PGT_FLOAT4 ? "float" : "double");
            }
            break;
        case PGT_NUMERIC:
            /* A number when a double holds it exactly (at most 15 digits), else a string. */
            if (url)
                s = typed("number", NULL);
            else {
                s = either(typed("number", NULL), typed("string", NULL), nullable);
                nullable = false;
            }
            break;
        case PGT_JSON:
        case PGT_JSONB:
            s = url ? described(typed("string", NULL), "JSON text") : json_object();
            nullable = false; /* any JSON value, null included */
            break;
        case PGT_BYTEA:
            s = typed("string", "byte");
            break;
        case PGT_DATE:
            s = typed("string", "date");
            break;
        case PGT_TIMESTAMPTZ:
            s = typed("string", "date-time");
            break;
        case PGT_TIMESTAMP:
            s = described(typed("string", NULL), "ISO-8601 without an offset, e.g. 2024-01-02T03:04:05");
            break;
        case PGT_UUID:
            s = typed("string", "uuid");
            break;
        default: /* text, varchar, intervals, enums, ...: the PostgreSQL text form */
            s = typed("string", NULL);
            break;
        }
    }
    if (nullable) json_object_set_new(s, "nullable", json_true());
    if (t != 0) {
        const char *name = pgtype_name(t);
        char oid[32];
        if (name == NULL) snprintf(oid, sizeof oid, "oid %u", (unsigned)t);
        json_object_set_new(s, "x-pg-type", json_string(name ? name : oid));
    }
    return s;
}

/* A value may be null wherever it travels, but in a URL (absent instead). */
static json_t *type_schema(Oid t, enum where where)
{
    return type_schema_n(t, where, true);
}

/* --- building blocks ------------------------------------------------------------------------- */

static json_t *ref(const char *kind, const char *name)
{
    char buf[512];
    snprintf(buf, sizeof buf, "#/components/%s/%s", kind, name);
    return json_pack("{s:s}", "$ref", buf);
}

static json_t *json_content(json_t *schema)
{
    return json_pack("{s:{s:o}}", "application/json", "schema", schema);
}

static json_t *response(const char *description, json_t *schema)
{
    return json_pack("{s:s,s:o}", "description", description, "content", json_content(schema));
}

/* Sets the error responses of the given statuses ("400", ...) on responses and notes them in
 * used (status -> true), so that components/responses holds only those. */
static void add_errors(json_t *used, json_t *responses, const char *const *statuses)
{
    for (; *statuses; statuses++) {
        int code = atoi(*statuses);
        json_object_set_new(responses, *statuses, ref("responses", http_error_code(code)));
        json_object_set_new(used, *statuses, json_true());
    }
}

/* The answers the router may give any request before its endpoint runs (router.c): 400 for too
 * many query-string items, 413 / 414 / 431 for a body, URL or headers past their limits, 415 for
 * a method other than GET or HEAD without a JSON (or the body's own) Content-Type, and 503 once
 * the worker has max_inflight requests in progress (probes and /metrics are exempt). */
static void add_gateway_errors(json_t *used, json_t *responses, const char *method, bool exempt)
{
    static const char *const limits[] = {"400", "413", "414", "431", NULL};
    static const char *const content_type[] = {"415", NULL};
    static const char *const busy[] = {"503", NULL};
    add_errors(used, responses, limits);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) add_errors(used, responses, content_type);
    if (!exempt) add_errors(used, responses, busy);
}

/* The schema of parameters by name (takes both references): the optional ones are left out of
 * required, and an empty required is left out (OpenAPI 3.0 wants at least one item there). */
static json_t *params_object(json_t *props, json_t *required)
{
    json_t *o = json_pack("{s:s,s:o,s:b}", "type", "object", "properties", props, "additionalProperties", 0);
    if (json_array_size(required) > 0)
        json_object_set_new(o, "required", required);
    else
        json_decref(required);
    return o;
}

static json_t *parameter(const char *name, const char *in, json_t *schema)
{
    return json_pack("{s:s,s:s,s:b,s:o}", "name", name, "in", in, "required", 1, "schema", schema);
}

/* A unique operationId: base, else base_2, base_3, ... */
static void set_operation_id(json_t *op, json_t *used, const char *base)
{
    char id[300];
    snprintf(id, sizeof id, "%s", base);
    for (int n = 2; json_object_get(used, id) != NULL; n++) snprintf(id, sizeof id, "%.280s_%d", base, n);
    json_object_set_new(used, id, json_true());
    json_object_set_new(op, "operationId", json_string(id));
}

/* The path of a route ("/quotes/{pair}") and its template key ("/quotes/{}"): two routes with
 * the same key are the same path to OpenAPI, whatever their parameters are called. */
static void route_path(const struct route_pattern *r, struct buf *path, struct buf *key)
{
    buf_reset(path);
    buf_reset(key);
    for (int i = 0; i < r->nsegs; i++) {
        buf_putc(path, '/');
        buf_puts(path, r->segs[i]);
        buf_putc(key, '/');
        buf_puts(key, r->segs[i][0] == '{' ? "{}" : r->segs[i]);
    }
    if (r->nsegs == 0) {
        buf_putc(path, '/');
        buf_putc(key, '/');
    }
}

static bool method_has_body(const char *m)
{
    return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

static bool openapi_method(const char *m, char *lower, size_t n)
{
    static const char *const known[] = {"GET",  "PUT",   "POST",  "DELETE", "OPTIONS",
                                        "HEAD", "PATCH", "TRACE", NULL};
    for (const char *const *k = known; *k; k++)
        if (strcmp(*k, m) == 0) {
            size_t i = 0;
            for (; m[i] && i + 1 < n; i++) lower[i] = (char)(m[i] - 'A' + 'a');
            lower[i] = '\0';
            return true;
        }
    return false;
}

/* The document under construction. */
struct doc {
    json_t *root, *paths, *schemas, *used_ids;
    json_t *used_errors; /* "400" -> true for each error response referenced */
    json_t *templates;   /* template key -> the path it was first written as */
    json_t *schemes;     /* security scheme name -> its definition, for each one referenced */
    const struct describe_result *d;
};

/* Marks op as needing scheme (see add_scheme) and lists its 401 and 403 answers. */
static void require_scheme(struct doc *doc, json_t *op, json_t *responses, const char *scheme)
{
    static const char *const refusals[] = {"401", "403", NULL};
    add_errors(doc->used_errors, responses, refusals);
    json_object_set_new(op, "security", json_pack("[{s:[]}]", scheme));
    json_t *def = strcmp(scheme, "jwt") == 0
                      ? json_pack("{s:s,s:s,s:s}", "type", "http", "scheme", "bearer", "bearerFormat", "JWT")
                      : json_pack("{s:s,s:s}", "type", "http", "scheme", "bearer");
    json_object_set_new(doc->schemes, scheme, def);
}

/* The security of an endpoint with this auth. A Lua policy decides in code, so it names no
 * scheme; it can still refuse. */
static void endpoint_security(struct doc *doc, json_t *op, json_t *responses, enum endpoint_auth auth)
{
    static const char *const refusals[] = {"401", "403", NULL};
    if (auth == AUTH_BEARER)
        require_scheme(doc, op, responses, "bearer");
    else if (auth == AUTH_JWT)
        require_scheme(doc, op, responses, "jwt");
    else if (auth == AUTH_LUA)
        add_errors(doc->used_errors, responses, refusals);
}

/* The path item for a route's path, or NULL when an equivalent path was already written under
 * other parameter names (the router takes the first, so the later one is left out). */
static json_t *route_item(struct doc *doc, const struct route_pattern *r)
{
    struct buf path = BUF_INIT, key = BUF_INIT;
    route_path(r, &path, &key);
    json_t *item = NULL;
    json_t *seen = json_object_get(doc->templates, key.data);
    if (seen == NULL || strcmp(json_string_value(seen), path.data) == 0) {
        json_object_set_new(doc->templates, key.data, json_string(path.data));
        item = json_object_get(doc->paths, path.data);
        if (item == NULL) {
            item = json_object();
            json_object_set_new(doc->paths, path.data, item);
        }
    }
    buf_free(&path);
    buf_free(&key);
    return item;
}

static json_t *fixed_item(struct doc *doc, const char *path)
{
    json_t *item = json_object();
    json_object_set_new(doc->paths, path, item);
    json_object_set_new(doc->templates, path, json_string(path));
    return item;
}

/* --- named queries --------------------------------------------------------------------------- */

static Oid param_type(const struct query_def *q, const struct describe_entry *e, int i)
{
    if (e && i < e->nparams) return e->param_types[i];
    if (q->described && q->param_types) return q->param_types[i];
    return 0;
}

/* components/schemas: query.<name>.row (a single-row query, or one whose statement has a result
 * set), query.<name>.result (not single) and query.<name>.params (when it has parameters). */
static void query_schemas(struct doc *doc, const struct query_def *q, const struct describe_entry *e)
{
    char name[300];
    json_t *row;
    if (e && e->returns_rows) {
        json_t *props = json_object(), *required = json_array();
        for (int i = 0; i < e->ncols; i++) {
            if (json_object_get(props, e->cols[i].name)) continue; /* a repeated name: the first wins */
            json_object_set_new(props, e->cols[i].name,
                                type_schema_n(e->cols[i].type, IN_RESULT, !e->cols[i].notnull));
            json_array_append_new(required, json_string(e->cols[i].name));
        }
        row = json_pack("{s:s,s:o,s:o}", "type", "object", "properties", props, "required", required);
    } else if (e && !q->single) {
        row = NULL; /* no result set: rows is always empty */
    } else {
        /* Columns not known (or a single-row query without a result set, which only ever answers 404). */
        row = json_pack("{s:s,s:b}", "type", "object", "additionalProperties", 1);
    }
    snprintf(name, sizeof name, "query.%s.row", q->name);
    if (row) json_object_set_new(doc->schemas, name, row);
    if (!q->single) {
        json_t *rows = row ? json_pack("{s:s,s:o}", "type", "array", "items", ref("schemas", name))
                           : json_pack("{s:s,s:i,s:{}}", "type", "array", "maxItems", 0, "items");
        json_t *result =
            json_pack("{s:s,s:[s,s],s:{s:o,s:{s:s,s:i,s:s}}}", "type", "object", "required", "rows",
                      "row_count", "properties", "rows", rows, "row_count", "type", "integer", "minimum", 0,
                      "description", row ? "the number of rows" : "the number of rows affected");
        snprintf(name, sizeof name, "query.%s.result", q->name);
        json_object_set_new(doc->schemas, name, result);
    }

    if (q->nparams > 0) {
        json_t *props = json_object(), *required = json_array();
        for (int i = 0; i < q->nparams; i++) {
            json_object_set_new(props, q->param_names[i], type_schema(param_type(q, e, i), IN_BODY));
            if (query_def_default(q, i) == NULL)
                json_array_append_new(required, json_string(q->param_names[i]));
        }
        snprintf(name, sizeof name, "query.%s.params", q->name);
        json_object_set_new(doc->schemas, name, params_object(props, required));
    }
}

/* One operation on query q. route: NULL for /query/{name}. */
static json_t *query_operation(struct doc *doc, const struct query_def *q, const struct describe_entry *e,
                               const char *method, const struct route_pattern *route, const char *op_id)
{
    char name[300];
    json_t *op = json_object();
    char summary[400];
    snprintf(summary, sizeof summary, "named query %s%s", q->name,
             q->readonly ? (q->single ? " (readonly, one row)" : " (readonly)")
                         : (q->single ? " (one row)" : ""));
    json_object_set_new(op, "summary", json_string(summary));
    json_object_set_new(op, "tags", json_pack("[s]", route ? "routes" : "queries"));
    set_operation_id(op, doc->used_ids, op_id);

    json_t *params = json_array();
    bool *bound = xcalloc((size_t)(q->nparams ? q->nparams : 1), sizeof *bound);
    for (int i = 0; route && i < route->nsegs; i++) {
        const char *seg = route->segs[i];
        if (seg[0] != '{') continue;
        char pname[256];
        snprintf(pname, sizeof pname, "%.*s", (int)strlen(seg) - 2, seg + 1);
        int k = query_def_param(q, pname, strlen(pname));
        if (k >= 0) bound[k] = true;
        json_array_append_new(
            params, parameter(pname, "path", type_schema(k >= 0 ? param_type(q, e, k) : 0, IN_URL)));
    }
    int rest = 0;
    for (int i = 0; i < q->nparams; i++) rest += !bound[i];
    bool body = method_has_body(method);
    if (!body) {
        for (int i = 0; i < q->nparams; i++)
            if (!bound[i]) {
                json_t *p = parameter(q->param_names[i], "query", type_schema(param_type(q, e, i), IN_URL));
                if (query_def_default(q, i) != NULL) json_object_set_new(p, "required", json_false());
                json_array_append_new(params, p);
            }
    } else if (rest > 0) {
        json_t *schema;
        snprintf(name, sizeof name, "query.%s.params", q->name);
        if (route == NULL) {
            /* By name, or every parameter by position ($1 first). */
            json_t *by_position = json_pack(
                "{s:s,s:i,s:i,s:{},s:s}", "type", "array", "minItems", q->nparams, "maxItems", q->nparams,
                "items", "description", "the parameters by position, in the order the SQL first names them");
            schema = json_pack("{s:[o,o]}", "oneOf", ref("schemas", name), by_position);
        } else if (rest == q->nparams) {
            schema = ref("schemas", name);
        } else {
            json_t *props = json_object(), *required = json_array();
            for (int i = 0; i < q->nparams; i++) {
                if (bound[i]) continue;
                json_object_set_new(props, q->param_names[i], type_schema(param_type(q, e, i), IN_BODY));
                if (query_def_default(q, i) == NULL)
                    json_array_append_new(required, json_string(q->param_names[i]));
            }
            schema = params_object(props, required);
        }
        json_object_set_new(op, "requestBody",
                            json_pack("{s:b,s:o}", "required", 1, "content", json_content(schema)));
    }
    free(bound);
    if (json_array_size(params) > 0)
        json_object_set_new(op, "parameters", params);
    else
        json_decref(params);

    json_t *responses = json_object();
    if (q->single) {
        snprintf(name, sizeof name, "query.%s.row", q->name);
        json_object_set_new(responses, "200", response("the row", ref("schemas", name)));
    } else {
        snprintf(name, sizeof name, "query.%s.result", q->name);
        json_t *rows = response("the rows", ref("schemas", name));
        /* Accept: text/csv or application/x-ndjson streams them instead (stream.c) */
        json_t *content = json_object_get(rows, "content");
        json_object_set_new(content, "text/csv",
                            json_pack("{s:{s:s,s:s}}", "schema", "type", "string", "description",
                                      "a header row, then one line per row, as COPY ... CSV writes them"));
        snprintf(name, sizeof name, "one JSON object per line, each a query.%s.row", q->name);
        json_object_set_new(content, "application/x-ndjson",
                            json_pack("{s:{s:s,s:s}}", "schema", "type", "string", "description", name));
        json_object_set_new(responses, "200", rows);
    }
    static const char *const common[] = {"409", "500", "504", NULL};
    static const char *const single_only[] = {"404", NULL};
    add_gateway_errors(doc->used_errors, responses, method, false);
    add_errors(doc->used_errors, responses, common);
    if (q->single) add_errors(doc->used_errors, responses, single_only);
    endpoint_security(doc, op, responses, q->auth);
    json_object_set_new(op, "responses", responses);
    return op;
}

static void add_queries(struct doc *doc, const struct registry *reg)
{
    char path[300], id[300], lower[16];
    for (int i = 0; i < reg->nqueries; i++) {
        const struct query_def *q = reg->queries[i];
        const struct describe_entry *e = describe_find_query(doc->d, q);
        query_schemas(doc, q, e);
        snprintf(path, sizeof path, "/query/%s", q->name);
        json_t *item = fixed_item(doc, path);
        if (q->readonly) {
            snprintf(id, sizeof id, "%s_get", q->name);
            json_object_set_new(item, "get", query_operation(doc, q, e, "GET", NULL, id));
        }
        json_object_set_new(item, "post", query_operation(doc, q, e, "POST", NULL, q->name));
    }
    /* Route aliases after every /query/ path: the router tries those first. */
    for (int i = 0; i < reg->nqueries; i++) {
        const struct query_def *q = reg->queries[i];
        if (q->route == NULL || !openapi_method(q->route->method, lower, sizeof lower)) continue;
        json_t *item = route_item(doc, q->route);
        if (item == NULL || json_object_get(item, lower) != NULL) continue;
        snprintf(id, sizeof id, "%s_route", q->name);
        json_object_set_new(
            item, lower,
            query_operation(doc, q, describe_find_query(doc->d, q), q->route->method, q->route, id));
    }
}

/* --- bulk endpoints, handlers, fixed paths --------------------------------------------------- */

static void add_bulks(struct doc *doc, const struct registry *reg)
{
    static const char *const mode_names[] = {"insert", "upsert", "update", "delete"};
    char name[300], path[300], id[300], text[600];
    for (int i = 0; i < reg->nbulks; i++) {
        const struct bulk_def *b = reg->bulks[i];
        const struct describe_entry *e = describe_find_bulk(doc->d, b);
        json_t *props = json_object(), *required = json_array();
        struct buf header = BUF_INIT;
        for (int c = 0; c < b->ncolumns; c++) {
            Oid t = e && c < e->ncols ? e->cols[c].type : b->described && b->types ? b->types[c] : 0;
            json_object_set_new(props, b->columns[c], type_schema(t, IN_BODY));
            json_array_append_new(required, json_string(b->columns[c]));
            buf_puts(&header, c ? "," : "");
            buf_puts(&header, b->columns[c]);
        }
        snprintf(name, sizeof name, "bulk.%s.row", b->name);
        json_object_set_new(doc->schemas, name,
                            json_pack("{s:s,s:o,s:o,s:b}", "type", "object", "properties", props, "required",
                                      required, "additionalProperties", 0));
        json_t *content = json_object();
        json_object_set_new(
            content, "application/json",
            json_pack("{s:{s:s,s:o}}", "schema", "type", "array", "items", ref("schemas", name)));
        snprintf(text, sizeof text, "one JSON object per line, each a %s", name);
        json_object_set_new(content, "application/x-ndjson",
                            json_pack("{s:{s:s,s:s}}", "schema", "type", "string", "description", text));
        snprintf(text, sizeof text, "a header row naming the columns (%.400s), then one record per row",
                 header.data);
        json_object_set_new(content, "text/csv",
                            json_pack("{s:{s:s,s:s}}", "schema", "type", "string", "description", text));
        buf_free(&header);

        json_t *responses = json_object();
        json_object_set_new(responses, "200", response("every row was loaded", ref("schemas", "BulkResult")));
        static const char *const errs[] = {"409", "500", "504", NULL};
        add_gateway_errors(doc->used_errors, responses, "POST", false);
        add_errors(doc->used_errors, responses, errs);
        snprintf(text, sizeof text, "bulk %s of table %.200s through COPY (%s%s)", mode_names[b->mode],
                 b->table, b->atomic ? "one transaction" : "a transaction per chunk of ",
                 b->atomic ? "" : "rows");
        json_t *op = json_pack("{s:s,s:[s],s:{s:b,s:o},s:o}", "summary", text, "tags", "bulk", "requestBody",
                               "required", 1, "content", content, "responses", responses);
        endpoint_security(doc, op, responses, b->auth);
        snprintf(id, sizeof id, "bulk_%s", b->name);
        set_operation_id(op, doc->used_ids, id);
        snprintf(path, sizeof path, "/bulk/%s", b->name);
        json_object_set_new(fixed_item(doc, path), "post", op);
    }
}

static void add_handlers(struct doc *doc, const struct registry *reg)
{
    char lower[16], text[300];
    for (int i = 0; i < reg->nhandlers; i++) {
        const struct handler_def *h = reg->handlers[i];
        if (h->route == NULL || !openapi_method(h->route->method, lower, sizeof lower)) continue;
        json_t *item = route_item(doc, h->route);
        if (item == NULL || json_object_get(item, lower) != NULL) continue;
        snprintf(text, sizeof text, "Lua handler %s", h->name);
        json_t *op = json_pack("{s:s,s:[s]}", "summary", text, "tags", "handlers");
        set_operation_id(op, doc->used_ids, h->name);
        json_t *params = json_array();
        for (int k = 0; k < h->route->nsegs; k++) {
            const char *seg = h->route->segs[k];
            if (seg[0] != '{') continue;
            char pname[256];
            snprintf(pname, sizeof pname, "%.*s", (int)strlen(seg) - 2, seg + 1);
            json_array_append_new(params, parameter(pname, "path", typed("string", NULL)));
        }
        if (json_array_size(params) > 0)
            json_object_set_new(op, "parameters", params);
        else
            json_decref(params);
        if (method_has_body(h->route->method))
            json_object_set_new(
                op, "requestBody",
                json_pack("{s:b,s:o}", "required", 0, "content", json_content(json_object())));
        json_t *responses = json_object();
        json_object_set_new(responses, "200", response("what the handler returns", json_object()));
        json_object_set_new(
            responses, "default",
            response("another status the handler chose; gateway errors have the Error shape", json_object()));
        /* a JSON body that does not parse, a wrong content type, the limits; 500 / 504 for a
         * handler that fails or runs past the deadline */
        static const char *const errs[] = {"500", "504", NULL};
        add_gateway_errors(doc->used_errors, responses, h->route->method, false);
        add_errors(doc->used_errors, responses, errs);
        endpoint_security(doc, op, responses, h->auth);
        json_object_set_new(op, "responses", responses);
        json_object_set_new(item, lower, op);
    }
}

/* GET /events/{name} of each sluice.channel: a text/event-stream. */
static void add_channels(struct doc *doc, const struct registry *reg)
{
    char text[400], id[300], path[300];
    for (int i = 0; i < reg->nchannels; i++) {
        const struct channel_def *c = reg->channels[i];
        snprintf(text, sizeof text,
                 "events of channel %.100s: each NOTIFY %.63s as one Server-Sent Event (id:, data:); "
                 "Last-Event-ID replays the last %d",
                 c->name, c->listen, c->buffer);
        json_t *content = json_pack("{s:{s:{s:s}}}", "text/event-stream", "schema", "type", "string");
        json_t *responses = json_object();
        json_object_set_new(responses, "200",
                            json_pack("{s:s,s:o}", "description",
                                      "an event stream: event: reset, overflow or closed "
                                      "besides the notifications",
                                      "content", content));
        static const char *const errs[] = {"404", NULL};
        add_errors(doc->used_errors, responses, errs);
        add_gateway_errors(doc->used_errors, responses, "GET", false);
        json_t *op = json_pack("{s:s,s:[s],s:[{s:s,s:s,s:b,s:{s:s}}]}", "summary", text, "tags", "events",
                               "parameters", "name", "Last-Event-ID", "in", "header", "required", 0, "schema",
                               "type", "string");
        endpoint_security(doc, op, responses, c->auth);
        json_object_set_new(op, "responses", responses);
        snprintf(id, sizeof id, "events_%s", c->name);
        set_operation_id(op, doc->used_ids, id);
        snprintf(path, sizeof path, "/events/%s", c->name);
        json_object_set_new(fixed_item(doc, path), "get", op);
    }
}

/* An operation of a fixed path, with the router's answers (add_gateway_errors; probe: exempt from
 * max_inflight). */
static json_t *simple_op(struct doc *doc, const char *method, bool probe, const char *id, const char *summary,
                         const char *tag, json_t *responses)
{
    add_gateway_errors(doc->used_errors, responses, method, probe);
    json_t *op = json_pack("{s:s,s:[s],s:o}", "summary", summary, "tags", tag, "responses", responses);
    set_operation_id(op, doc->used_ids, id);
    return op;
}

static void add_fixed(struct doc *doc, const struct registry *reg, const struct config *cfg)
{
    /* POST /batch */
    json_t *names = json_array();
    for (int i = 0; i < reg->nqueries; i++) json_array_append_new(names, json_string(reg->queries[i]->name));
    json_t *query_name = json_pack("{s:s}", "type", "string");
    if (json_array_size(names) > 0)
        json_object_set_new(query_name, "enum", names);
    else
        json_decref(names);
    /* By name (an object) or by position (an array: OpenAPI 3.0 wants its items). */
    json_t *item_params =
        json_pack("{s:[{s:s,s:b,s:s},{s:s,s:{},s:s}],s:s}", "oneOf", "type", "object", "additionalProperties",
                  1, "description", "by name: {\"name\": value, ...}", "type", "array", "items",
                  "description", "by position, in the order the SQL first names them", "description",
                  "the parameters by name or by position, as for POST /query/{name}");
    json_t *item_schema =
        json_pack("{s:s,s:[s],s:{s:o,s:o},s:b}", "type", "object", "required", "query", "properties", "query",
                  query_name, "params", item_params, "additionalProperties", 0);
    json_t *batch_resp = json_object();
    json_object_set_new(
        batch_resp, "200",
        response("one answer per item, in order: its status and the body /query/{name} would give",
                 json_pack("{s:s,s:{s:s,s:[s,s],s:{s:{s:s},s:{}}}}", "type", "array", "items", "type",
                           "object", "required", "status", "body", "properties", "status", "type", "integer",
                           "body")));
    static const char *const batch_errs[] = {"409", "500", "504", NULL};
    add_errors(doc->used_errors, batch_resp, batch_errs);
    json_t *batch =
        simple_op(doc, "POST", false, "batch", "several named queries in one request", "queries", batch_resp);
    json_object_set_new(
        batch, "parameters",
        json_pack("[{s:s,s:s,s:b,s:s,s:{s:s,s:b}}]", "name", "transaction", "in", "query", "required", 0,
                  "description",
                  "true: all in one transaction, in order; the first failure rolls back and is the answer",
                  "schema", "type", "boolean", "default", 0));
    json_object_set_new(
        batch, "requestBody",
        json_pack("{s:b,s:o}", "required", 1, "content",
                  json_content(json_pack("{s:s,s:o}", "type", "array", "items", item_schema))));
    json_object_set_new(fixed_item(doc, "/batch"), "post", batch);

    json_t *r = json_object();
    json_object_set_new(
        r, "200",
        response("every required pool can serve (some optional one may be down)", ref("schemas", "Health")));
    json_object_set_new(r, "503", response("a required pool is down", ref("schemas", "Health")));
    /* protect_metrics puts /health and /metrics behind the admin token (auth.c). */
    bool protect = cfg->protect_metrics && cfg->admin_token != NULL;
    json_t *op = simple_op(doc, "GET", true, "health", "state of every pool", "health", r);
    if (protect) require_scheme(doc, op, r, "admin");
    json_object_set_new(fixed_item(doc, "/health"), "get", op);

    r = json_object();
    json_object_set_new(r, "200", response("the process serves", ref("schemas", "Status")));
    static const char *const unavailable[] = {"503", NULL};
    add_errors(doc->used_errors, r, unavailable);
    json_object_set_new(fixed_item(doc, "/health/live"), "get",
                        simple_op(doc, "GET", true, "health_live", "liveness", "health", r));

    r = json_object();
    json_object_set_new(r, "200",
                        response("every pool that is not optional can serve", ref("schemas", "Status")));
    add_errors(doc->used_errors, r, unavailable);
    json_object_set_new(fixed_item(doc, "/health/ready"), "get",
                        simple_op(doc, "GET", true, "health_ready", "readiness", "health", r));

    r = json_pack("{s:{s:s,s:{s:{s:{s:s}}}}}", "200", "description", "Prometheus text format 0.0.4",
                  "content", "text/plain; version=0.0.4", "schema", "type", "string");
    op = simple_op(doc, "GET", true, "metrics", "Prometheus metrics", "metrics", r);
    if (protect) require_scheme(doc, op, r, "admin");
    json_object_set_new(fixed_item(doc, "/metrics"), "get", op);

    r = json_object();
    json_object_set_new(r, "200", response("this document", json_pack("{s:s}", "type", "object")));
    json_object_set_new(fixed_item(doc, "/openapi.json"), "get",
                        simple_op(doc, "GET", false, "openapi",
                                  "the OpenAPI document of the loaded endpoints", "metrics", r));

    if (cfg->admin_token != NULL) {
        r = json_object();
        json_object_set_new(
            r, "200",
            response("per named query: calls, errors, latency quantiles, slow count, last error",
                     json_pack("{s:s,s:[s],s:{s:{s:s,s:{s:s}}}}", "type", "object", "required", "queries",
                               "properties", "queries", "type", "array", "items", "type", "object")));
        op = simple_op(doc, "GET", false, "admin_queries", "statistics of every named query", "admin", r);
        require_scheme(doc, op, r, "admin");
        json_object_set_new(fixed_item(doc, "/admin/queries"), "get", op);

        r = json_object();
        json_object_set_new(
            r, "200",
            response("the scripts load: every worker reloads them (as on SIGHUP)",
                     json_pack("{s:s,s:{s:{s:s},s:{s:s},s:{s:s},s:{s:s}}}", "type", "object", "properties",
                               "status", "type", "string", "queries", "type", "integer", "bulk", "type",
                               "integer", "handlers", "type", "integer")));
        op = simple_op(doc, "POST", false, "admin_reload", "check and reload the scripts", "admin", r);
        require_scheme(doc, op, r, "admin");
        json_object_set_new(fixed_item(doc, "/admin/reload"), "post", op);
    }
}

/* --- components ------------------------------------------------------------------------------ */

/* {"error":{...}}: every field some answer of the gateway carries; code and message always. */
static json_t *error_schema(void)
{
    static const struct {
        const char *name, *type, *what;
    } fields[] = {
        {"message", "string", "what went wrong, for people"},
        {"query", "string", "the named query"},
        {"param", "string", "the parameter a bad_request is about"},
        {"sqlstate", "string", "the SQLSTATE of a database error"},
        {"request_id", "string", "the request's X-Request-Id (kept or generated), as in the server log"},
        {"index", "integer", "/batch?transaction=true: the failing item, counted from 0"},
        {"outcome", "string",
         "unknown: the connection was lost while a write committed, so it may or may not have"},
        {"bulk", "string", "the bulk endpoint"},
        {"row", "integer", "the failing row of a bulk body, counted from 1"},
        {"column", "string", "the column of the failing value of a bulk body"},
        {"committed_chunks", "integer", "bulk: chunks committed before the failure"},
        {"rows_committed", "integer", "bulk: rows committed before the failure"},
    };
    json_t *props = json_object();
    json_object_set_new(props, "code",
                        json_pack("{s:s,s:s,s:[s,s,s,s,s,s,s,s,s,s,s]}", "type", "string", "description",
                                  "the kind of error", "enum", "bad_request", "unauthorized", "forbidden",
                                  "not_found", "method_not_allowed", "conflict", "too_large",
                                  "unsupported_media_type", "unavailable", "timeout", "internal"));
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
        json_t *f = json_pack("{s:s,s:s}", "type", fields[i].type, "description", fields[i].what);
        if (strcmp(fields[i].name, "outcome") == 0)
            json_object_set_new(f, "enum", json_pack("[s]", "unknown"));
        if (strcmp(fields[i].type, "integer") == 0) json_object_set_new(f, "minimum", json_integer(0));
        json_object_set_new(props, fields[i].name, f);
    }
    return json_pack("{s:s,s:[s],s:{s:{s:s,s:[s,s],s:o}}}", "type", "object", "required", "error",
                     "properties", "error", "type", "object", "required", "code", "message", "properties",
                     props);
}

static void add_components(struct doc *doc, const struct config *cfg)
{
    json_t *schemas = doc->schemas;
    json_object_set_new(schemas, "Error", error_schema());
    json_object_set_new(schemas, "BulkResult",
                        json_pack("{s:s,s:[s],s:{s:{s:s},s:{s:s},s:{s:s},s:{s:s},s:{s:s,s:s}}}", "type",
                                  "object", "required", "rows", "properties", "rows", "type", "integer",
                                  "chunks", "type", "integer", "committed_chunks", "type", "integer",
                                  "took_ms", "type", "number", "affected", "type", "integer", "description",
                                  "rows inserted, updated or deleted by upsert, update and delete"));
    json_object_set_new(
        schemas, "Health",
        json_pack(
            "{s:s,s:[s,s],s:{s:{s:s,s:[s,s,s]},s:{s:s,s:{s:s,s:{s:{s:s,s:[s,s]},s:{s:s},s:{s:s},s:{s:s},"
            "s:{s:s},s:{s:s},s:{s:s}}}}}}",
            "type", "object", "required", "status", "pools", "properties", "status", "type", "string", "enum",
            "ok", "degraded", "down", "pools", "type", "object", "additionalProperties", "type", "object",
            "properties", "status", "type", "string", "enum", "ok", "down", "size", "type", "integer", "open",
            "type", "integer", "in_use", "type", "integer", "waiting", "type", "integer", "breaker", "type",
            "string", "last_error", "type", "string"));
    json_object_set_new(
        schemas, "Status",
        json_pack("{s:s,s:{s:{s:s}}}", "type", "object", "properties", "status", "type", "string"));

    static const struct {
        int status;
        const char *what;
    } errs[] = {
        {400, "malformed JSON, an unknown or missing parameter, a value not convertible to its type, more "
              "query-string items than max_params"},
        {401, "no admin bearer token"},
        {403, "a wrong admin token"},
        {404, "no such endpoint, or no row for a single-row query"},
        {409,
         "a unique, foreign-key or check violation (SQLSTATE 23xxx), a serialization failure or deadlock"},
        {413, "the body is larger than max_body_bytes (413), the URL longer than max_url_bytes (414), or "
              "the headers past max_headers or max_header_bytes (431)"},
        {415, "not GET or HEAD and no Content-Type application/json (or the body's own type, "
              "e.g. text/csv for bulk), even without a body; or a body type the endpoint does not take"},
        {500, "anything else (the server log has the detail)"},
        {503,
         "no connection within pool_timeout, the circuit breaker is open, the database is unreachable, or "
         "the worker already has max_inflight requests in progress"},
        {504, "the statement timeout or the request deadline passed"},
    };
    json_t *responses = json_object();
    for (size_t i = 0; i < ARRAY_SIZE(errs); i++) {
        char status[8];
        snprintf(status, sizeof status, "%d", errs[i].status);
        if (json_object_get(doc->used_errors, status) == NULL) continue;
        json_t *resp = response(errs[i].what, ref("schemas", "Error"));
        if (errs[i].status == 503)
            json_object_set_new(resp, "headers",
                                json_pack("{s:{s:s,s:{s:s}}}", "Retry-After", "description",
                                          "seconds to wait", "schema", "type", "integer"));
        json_object_set_new(responses, http_error_code(errs[i].status), resp);
    }
    json_t *components = json_pack("{s:o,s:o}", "schemas", schemas, "responses", responses);
    if (json_object_size(doc->schemes) > 0) json_object_set(components, "securitySchemes", doc->schemes);
    json_object_set_new(doc->root, "components", components);
}

/* A version that changes whenever the definitions do: FNV-1a over names, SQL and routes. */
static void definitions_version(const struct registry *reg, char *out, size_t n)
{
    uint64_t h = 1469598103934665603ull;
#define MIX(s)                                                                                               \
    do {                                                                                                     \
        for (const char *p_ = (s); p_ && *p_; p_++) h = (h ^ (unsigned char)*p_) * 1099511628211ull;         \
        h = (h ^ 0xff) * 1099511628211ull;                                                                   \
    } while (0)
    for (int i = 0; i < reg->nqueries; i++) {
        const struct query_def *q = reg->queries[i];
        MIX(q->name);
        MIX(q->sql);
        MIX(q->readonly ? "r" : "w");
        MIX(q->single ? "1" : "n");
        if (q->route) {
            MIX(q->route->method);
            for (int k = 0; k < q->route->nsegs; k++) MIX(q->route->segs[k]);
        }
    }
    for (int i = 0; i < reg->nbulks; i++) {
        MIX(reg->bulks[i]->name);
        MIX(reg->bulks[i]->table);
        for (int k = 0; k < reg->bulks[i]->ncolumns; k++) MIX(reg->bulks[i]->columns[k]);
    }
    for (int i = 0; i < reg->nchannels; i++) {
        MIX(reg->channels[i]->name);
        MIX(reg->channels[i]->listen);
    }
    for (int i = 0; i < reg->nhandlers; i++) {
        MIX(reg->handlers[i]->name);
        if (reg->handlers[i]->route) {
            MIX(reg->handlers[i]->route->method);
            for (int k = 0; k < reg->handlers[i]->route->nsegs; k++) MIX(reg->handlers[i]->route->segs[k]);
        }
    }
#undef MIX
    snprintf(out, n, "1.0.0+%016llx", (unsigned long long)h);
}

void openapi_write(struct buf *out, const struct registry *reg, const struct describe_result *d,
                   const struct config *cfg)
{
    char version[64];
    definitions_version(reg, version, sizeof version);
    struct doc doc = {
        .paths = json_object(),
        .schemas = json_object(),
        .used_ids = json_object(),
        .used_errors = json_object(),
        .templates = json_object(),
        .schemes = json_object(),
        .d = d,
    };
    doc.root = json_pack("{s:s,s:{s:s,s:s,s:s},s:[{s:s}]}", "openapi", "3.0.3", "info", "title", "sluice",
                         "version", version, "description",
                         "Named queries, bulk loads and handlers of this sluice gateway. A parameter takes a "
                         "JSON value of its "
                         "type or a string in PostgreSQL's input syntax; bytea is base64. Results map "
                         "PostgreSQL types to JSON: "
                         "int8 and numeric are numbers while a double holds them exactly, else strings; "
                         "timestamps are ISO-8601. "
                         "Every error is {\"error\":{\"code\",\"message\"}}.",
                         "servers", "url", "/");
    json_t *license = json_pack("{s:s}", "name", cfg->openapi_license ? cfg->openapi_license : "Proprietary");
    if (cfg->openapi_license_url) json_object_set_new(license, "url", json_string(cfg->openapi_license_url));
    json_object_set_new(json_object_get(doc.root, "info"), "license", license);
    /* No credential by default: each operation that needs one says so itself. */
    json_object_set_new(doc.root, "security", json_array());

    add_fixed(&doc, reg, cfg);
    add_queries(&doc, reg);
    add_bulks(&doc, reg);
    add_handlers(&doc, reg);
    add_channels(&doc, reg);

    json_object_set_new(doc.root, "paths", doc.paths);
    add_components(&doc, cfg);
    json_object_set_new(
        doc.root, "tags",
        json_pack("[{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s}]", "name",
                  "queries", "description", "named queries: GET (readonly) or POST /query/{name}", "name",
                  "routes", "description", "REST-style aliases of named queries", "name", "bulk",
                  "description", "bulk loads through COPY", "name", "handlers", "description", "Lua handlers",
                  "name", "events", "description", "live events: PostgreSQL NOTIFY as Server-Sent Events",
                  "name", "health", "description", "probes", "name", "metrics", "description",
                  "observability", "name", "admin", "description", "operator endpoints (bearer token)"));

    char *text = json_dumps(doc.root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    if (text == NULL) abort(); /* jansson only fails when out of memory */
    buf_puts(out, text);
    free(text);
    json_decref(doc.root);
    json_decref(doc.used_ids);
    json_decref(doc.used_errors);
    json_decref(doc.templates);
    json_decref(doc.schemes);
}

int openapi_handle(struct worker *w, h2o_req_t *req)
{
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET"));
        http_send_error(req, 405, "method_not_allowed", "use GET", NULL, NULL);
        return 0;
    }
    struct buf *b = &w->out;
    buf_reset(b);
    openapi_write(b, w->reg, describe_current(), worker_config(w));
    http_send_json(req, 200, b->data, b->len);
    return 0;
}
