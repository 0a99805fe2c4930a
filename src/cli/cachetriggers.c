/* cachetriggers.c — `sluice cache-triggers TABLE..` (cachetriggers.h). The payload is the name
 * the gateways know the table by (cache_table_canon), so a trigger and a query's cache.tables
 * always agree. */
#include "cachetriggers.h"

#include <ctype.h>
#include <string.h>

#include "buf.h"
#include "cache.h"
#include "endpoint.h"

/* The function every trigger calls: its one argument is the payload. */
static const char FUNCTION_SQL[] =
    "CREATE OR REPLACE FUNCTION sluice_invalidate() RETURNS trigger LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "  PERFORM pg_notify('sluice_invalidate', TG_ARGV[0]);\n"
    "  RETURN NULL;\n"
    "END $$;\n";

int cachetriggers_run(int n, char **tables, FILE *out)
{
    char canon[256];
    if (n == 0) {
        fprintf(stderr, "usage: sluice cache-triggers TABLE [TABLE..]\n");
        return 2;
    }
    for (int i = 0; i < n; i++)
        if (!cache_table_canon(tables[i], canon, sizeof canon) || strchr(tables[i], '\'') != NULL) {
            fprintf(stderr, "sluice cache-triggers: \"%s\" is not a table name\n", tables[i]);
            return 2;
        }
    struct buf b = BUF_INIT;
    buf_puts(&b, "-- sluice cache-triggers: writes made without the gateway invalidate its result cache\n");
    buf_puts(&b, "BEGIN;\n");
    buf_puts(&b, FUNCTION_SQL);
    for (int i = 0; i < n; i++) {
        /* as PostgreSQL reads an unquoted name: lower case, the schema kept */
        char table[256];
        snprintf(table, sizeof table, "%s", tables[i]);
        for (char *p = table; *p; p++) *p = (char)tolower((unsigned char)*p);
        cache_table_canon(tables[i], canon, sizeof canon);
        buf_puts(&b, "CREATE OR REPLACE TRIGGER sluice_invalidate\n"
                     "  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ");
        endpoint_quote_ident(&b, table);
        buf_printf(&b, "\n  FOR EACH STATEMENT EXECUTE FUNCTION sluice_invalidate('%s');\n", canon);
    }
    buf_puts(&b, "COMMIT;\n");
    fwrite(b.data, 1, b.len, out);
    buf_free(&b);
    return 0;
}
