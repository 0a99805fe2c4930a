/* scaffold.c — `sluice new NAME`: writes a small service (a notes table, three named queries, a
 * policy, a migration, a busted spec and a README) from the templates below; {{name}},
 * {{name_lua}} (the name as a Lua string literal) and {{db}} are replaced by the service's name
 * and its default database. */
#include "scaffold.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "buf.h"
#include "luastr.h"
#include "util.h"

static const char conf_tmpl[] =
    "-- sluice.lua — configuration of the {{name}} service (a Lua file that returns a table).\n"
    "-- Every key has a default; environment variables override it (DATABASE_URL, SLUICE_LISTEN,\n"
    "-- SLUICE_WORKERS, SLUICE_POOL_SIZE, ...). Relative paths resolve against the current directory:\n"
    "-- run sluice from the service's folder.\n"
    "return {\n"
    "  listen = \"127.0.0.1:8080\",            -- SLUICE_LISTEN\n"
    "  workers = \"auto\",                      -- SLUICE_WORKERS; auto = CPU count\n"
    "  request_timeout = 30,                   -- seconds\n"
    "  migrations = \"migrations\",             -- read by `sluice migrate`\n"
    "  log = { level = \"info\", format = \"json\" },\n"
    "  pools = {\n"
    "    primary = {\n"
    "      url = \"postgresql://postgres@127.0.0.1:5432/{{db}}\",  -- DATABASE_URL overrides it\n"
    "      pool_size = \"auto\",               -- SLUICE_POOL_SIZE; auto = 2 * CPU count + 1\n"
    "      statement_timeout_ms = 30000,\n"
    "    },\n"
    "    -- replica = { url = os.getenv(\"REPLICA_URL\"), optional = true },\n"
    "  },\n"
    "  scripts = { \"lua/endpoints/*.lua\", \"lua/policy.lua\" },\n"
    "}\n";

static const char endpoints_tmpl[] =
    "-- example.lua — the named queries of the {{name}} service (table notes: migrations/0001_init.sql).\n"
    "-- Each is served at GET|POST /query/{name} (GET only when readonly) and at its route alias.\n"
    "\n"
    "-- One note by id; 404 when there is none.\n"
    "sluice.query \"get_note\" {\n"
    "  sql = [[SELECT id, title, body, created_at FROM notes WHERE id = :id]],\n"
    "  readonly = true,\n"
    "  single = true,\n"
    "  route = \"GET /notes/{id}\",\n"
    "}\n"
    "\n"
    "-- The newest notes first, at most :limit (up to 100).\n"
    "sluice.query \"list_notes\" {\n"
    "  sql = [[\n"
    "    SELECT id, title, created_at FROM notes\n"
    "    ORDER BY created_at DESC, id DESC\n"
    "    LIMIT LEAST(:limit, 100)\n"
    "  ]],\n"
    "  readonly = true,\n"
    "  route = \"GET /notes\",\n"
    "}\n"
    "\n"
    "-- Adds a note and returns it. A title that is empty violates a check: 409 conflict.\n"
    "sluice.query \"add_note\" {\n"
    "  sql = [[INSERT INTO notes (title, body) VALUES (:title, :body) RETURNING id, title, body, "
    "created_at]],\n"
    "  single = true,\n"
    "  route = \"POST /notes\",\n"
    "}\n";

static const char policy_tmpl[] =
    "-- policy.lua — routing, resilience and monitoring of the {{name}} service.\n"
    "\n"
    "-- Readonly queries go to a healthy replica when a pool named \"replica\" is configured.\n"
    "function sluice.route(query, req)\n"
    "  local replica = sluice.pools.replica\n"
    "  if query.readonly and replica and replica.healthy then return \"replica\" end\n"
    "  return \"primary\"\n"
    "end\n"
    "\n"
    "sluice.policy {\n"
    "  slow_query_ms = 250,\n"
    "  retry = { attempts = 3, base_ms = 20, max_ms = 1000 },\n"
    "  breaker = { failures = 5, window_ms = 10000, open_ms = 5000, half_open = 1 },\n"
    "}\n";

static const char migration_tmpl[] =
    "-- 0001_init.sql — the first schema of the {{name}} service; `sluice migrate up` runs each\n"
    "-- migrations/NNNN_name.sql once, in order, in its own transaction.\n"
    "CREATE TABLE notes (\n"
    "    id         bigserial PRIMARY KEY,\n"
    "    title      text NOT NULL CHECK (title <> ''),\n"
    "    body       text NOT NULL DEFAULT '',\n"
    "    created_at timestamptz NOT NULL DEFAULT now()\n"
    ");\n"
    "\n"
    "INSERT INTO notes (title, body) VALUES ('hello', 'the first note of {{name}}');\n";

static const char spec_tmpl[] =
    "-- example_spec.lua — the {{name}} service over HTTP, against a running gateway:\n"
    "--   sluice serve &   then   busted tests/\n"
    "-- SLUICE_URL (default http://127.0.0.1:8080) says where it listens. Needs lua-socket and lua-cjson.\n"
    "local http = require \"socket.http\"\n"
    "local ltn12 = require \"ltn12\"\n"
    "local cjson = require \"cjson\"\n"
    "\n"
    "local base = os.getenv(\"SLUICE_URL\") or \"http://127.0.0.1:8080\"\n"
    "\n"
    "-- status, decoded body\n"
    "local function call(method, path, body)\n"
    "  local out, source, headers = {}, nil, {}\n"
    "  if body then\n"
    "    body = cjson.encode(body)\n"
    "    source = ltn12.source.string(body)\n"
    "    headers[\"content-type\"] = \"application/json\"\n"
    "    headers[\"content-length\"] = tostring(#body)\n"
    "  end\n"
    "  local _, status = http.request { url = base .. path, method = method, headers = headers,\n"
    "    source = source, sink = ltn12.sink.table(out) }\n"
    "  return status, cjson.decode(table.concat(out))\n"
    "end\n"
    "\n"
    "describe({{name_lua}}, function()\n"
    "  it(\"adds a note and reads it back\", function()\n"
    "    local status, note = call(\"POST\", \"/notes\", { title = \"spec\", body = \"written by busted\" "
    "})\n"
    "    assert.equal(200, status)\n"
    "    assert.equal(\"spec\", note.title)\n"
    "    local got\n"
    "    status, got = call(\"GET\", \"/notes/\" .. note.id)\n"
    "    assert.equal(200, status)\n"
    "    assert.same(note, got)\n"
    "  end)\n"
    "\n"
    "  it(\"lists the newest notes first\", function()\n"
    "    local status, list = call(\"GET\", \"/notes?limit=2\")\n"
    "    assert.equal(200, status)\n"
    "    assert.is_true(list.row_count >= 1 and list.row_count <= 2)\n"
    "  end)\n"
    "\n"
    "  it(\"answers 404 for a note that does not exist and 409 for an empty title\", function()\n"
    "    local status, err = call(\"GET\", \"/notes/999999999\")\n"
    "    assert.equal(404, status)\n"
    "    assert.equal(\"not_found\", err.error.code)\n"
    "    status, err = call(\"POST\", \"/notes\", { title = \"\", body = \"\" })\n"
    "    assert.equal(409, status)\n"
    "    assert.equal(\"conflict\", err.error.code)\n"
    "  end)\n"
    "end)\n";

static const char readme_tmpl[] =
    "# {{name}}\n"
    "\n"
    "A service behind sluice, the PostgreSQL gateway: its SQL lives in `lua/endpoints/*.lua` as\n"
    "named queries that any program calls over HTTP/JSON.\n"
    "\n"
    "| path | what it is |\n"
    "|---|---|\n"
    "| `conf/sluice.lua` | configuration: listen address, the database pool(s), the scripts |\n"
    "| `lua/endpoints/example.lua` | the named queries `get_note`, `list_notes`, `add_note` |\n"
    "| `lua/policy.lua` | routing to replicas, retries, circuit breaker, slow-query threshold |\n"
    "| `migrations/0001_init.sql` | the schema, applied by `sluice migrate up` |\n"
    "| `tests/example_spec.lua` | a busted spec that calls the running service |\n"
    "\n"
    "## Run it\n"
    "\n"
    "From this folder (sluice reads `conf/sluice.lua` by default), with a PostgreSQL you can create\n"
    "a database on:\n"
    "\n"
    "```sh\n"
    "export DATABASE_URL=postgresql://postgres@127.0.0.1:5432/{{db}}\n"
    "createdb {{db}}        # or CREATE DATABASE {{db}}; in psql\n"
    "sluice migrate up\n"
    "sluice check           # prepares every named query against the database\n"
    "sluice serve\n"
    "```\n"
    "\n"
    "Then, in another shell:\n"
    "\n"
    "```sh\n"
    "curl -s http://127.0.0.1:8080/notes/1\n"
    "curl -s -X POST -H 'Content-Type: application/json' -d '{\"title\":\"hi\",\"body\":\"there\"}' \\\n"
    "     http://127.0.0.1:8080/notes\n"
    "curl -s 'http://127.0.0.1:8080/query/list_notes?limit=10'\n"
    "curl -s http://127.0.0.1:8080/openapi.json   # the API of every loaded query, for client generators\n"
    "busted tests/                                # the spec, against the running service\n"
    "```\n"
    "\n"
    "## Change it\n"
    "\n"
    "- Add a table or column: a new `migrations/0002_what.sql`, then `sluice migrate up`.\n"
    "- Add a query: `sluice.query \"name\" { sql = [[...]], readonly = true }` in a file under\n"
    "  `lua/endpoints/`; `:param` placeholders become bound parameters, typed by the database.\n"
    "  `sluice check` tells you at once when a table, column or type does not exist.\n"
    "- Restart the gateway, or send it SIGHUP, to load changed scripts.\n"
    "- `/health`, `/health/ready` and `/metrics` (Prometheus) are served without more setup.\n";

/* The service's database name: the name lower-cased, [a-z0-9_] only. */
static char *db_name(const char *name)
{
    struct buf b = BUF_INIT;
    for (const char *p = name; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (isalnum(c))
            buf_putc(&b, (char)tolower(c));
        else if (b.len > 0 && b.data[b.len - 1] != '_')
            buf_putc(&b, '_');
    }
    while (b.len > 0 && b.data[b.len - 1] == '_') b.data[--b.len] = '\0';
    if (b.len == 0 || isdigit((unsigned char)b.data[0])) {
        char *rest = buf_steal(&b);
        buf_printf(&b, "svc_%s", rest);
        free(rest);
    }
    return buf_steal(&b);
}

/* A service name goes into Lua, SQL, Markdown and shell lines of the skeleton: letters, digits,
 * '_', '-' and '.', not starting with '-' or '.'. */
static bool valid_service_name(const char *name)
{
    if (*name == '\0' || *name == '-' || *name == '.') return false;
    for (const char *p = name; *p; p++) {
        char c = *p; /* ASCII only, whatever the locale */
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '-' || c == '.';
        if (!ok) return false;
    }
    return true;
}

/* The template with its placeholders filled in. In a Lua file (lua) {{name}} stands on comment
 * lines, so it is written without line breaks or control bytes whatever it holds; {{name_lua}}
 * is a quoted Lua string. {{db}} is [a-z0-9_] only (db_name). */
static char *render(const char *tmpl, const char *name, const char *db, bool lua)
{
    struct buf b = BUF_INIT;
    for (const char *p = tmpl; *p;) {
        if (strncmp(p, "{{name}}", 8) == 0) {
            if (lua)
                luastr_escape(&b, name, strlen(name));
            else
                buf_puts(&b, name);
            p += 8;
        } else if (strncmp(p, "{{name_lua}}", 12) == 0) {
            luastr_quote(&b, name, strlen(name));
            p += 12;
        } else if (strncmp(p, "{{db}}", 6) == 0) {
            buf_puts(&b, db);
            p += 6;
        } else {
            buf_putc(&b, *p++);
        }
    }
    return buf_steal(&b);
}

static int write_file(const char *dir, const char *rel, const char *tmpl, const char *name, const char *db)
{
    struct buf path = BUF_INIT;
    buf_printf(&path, "%s/%s", dir, rel);
    size_t n = strlen(rel);
    char *text = render(tmpl, name, db, n > 4 && strcmp(rel + n - 4, ".lua") == 0);
    FILE *f = fopen(path.data, "w");
    int rc = 0;
    if (f == NULL || fputs(text, f) == EOF || fclose(f) != 0) {
        fprintf(stderr, "new: cannot write %s: %s\n", path.data, strerror(errno));
        rc = -1;
    } else {
        printf("  %s\n", path.data);
    }
    free(text);
    buf_free(&path);
    return rc;
}

static int make_dir(const char *dir, const char *rel)
{
    struct buf path = BUF_INIT;
    if (rel)
        buf_printf(&path, "%s/%s", dir, rel);
    else
        buf_puts(&path, dir);
    int rc = mkdir(path.data, 0755);
    if (rc != 0) fprintf(stderr, "new: cannot create %s: %s\n", path.data, strerror(errno));
    buf_free(&path);
    return rc;
}

int scaffold_new(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    while (n > 1 && name[n - 1] == '/') n--;
    if (n == 0) {
        fprintf(stderr, "new: expected a service name, e.g. sluice new orders\n");
        return 2;
    }
    char *dir = xstrndup(name, n);
    const char *slash = strrchr(dir, '/');
    const char *service = slash ? slash + 1 : dir;
    if (*service == '\0' || strcmp(service, ".") == 0 || strcmp(service, "..") == 0) {
        fprintf(stderr, "new: \"%s\" does not name a new folder\n", name);
        free(dir);
        return 2;
    }
    if (!valid_service_name(service)) {
        struct buf shown = BUF_INIT;
        luastr_quote(&shown, service, strlen(service));
        fprintf(stderr,
                "new: the service name %s may hold only letters, digits, '_', '-' and '.', and may not start "
                "with '-' or '.'\n",
                shown.data);
        buf_free(&shown);
        free(dir);
        return 2;
    }
    struct stat st;
    if (stat(dir, &st) == 0) {
        fprintf(stderr, "new: %s already exists; choose another name\n", dir);
        free(dir);
        return 2;
    }
    char *db = db_name(service);
    static const char *const dirs[] = {"conf", "lua", "lua/endpoints", "migrations", "tests", NULL};
    static const struct {
        const char *path, *tmpl;
    } files[] = {
        {"conf/sluice.lua", conf_tmpl},        {"lua/endpoints/example.lua", endpoints_tmpl},
        {"lua/policy.lua", policy_tmpl},       {"migrations/0001_init.sql", migration_tmpl},
        {"tests/example_spec.lua", spec_tmpl}, {"README.md", readme_tmpl},
    };
    int rc = make_dir(dir, NULL);
    if (rc == 0) printf("created %s:\n", dir);
    for (const char *const *d = dirs; rc == 0 && *d; d++) rc = make_dir(dir, *d);
    for (size_t i = 0; rc == 0 && i < ARRAY_SIZE(files); i++)
        rc = write_file(dir, files[i].path, files[i].tmpl, service, db);
    if (rc == 0)
        printf("next:\n"
               "  cd %s\n"
               "  export DATABASE_URL=postgresql://postgres@127.0.0.1:5432/%s   # a database you created\n"
               "  sluice migrate up\n"
               "  sluice check\n"
               "  sluice serve\n",
               dir, db);
    free(db);
    free(dir);
    return rc == 0 ? 0 : 1;
}
