/* main.c — the command line: serve, migrate, check, version, help. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/version.h>
#include <libpq-fe.h>

#include "check.h"
#include "config.h"
#include "import.h"
#include "log.h"
#include "migrate.h"
#include "scaffold.h"
#include "serve.h"
#include "version.h"

/* Each command's usage, as `sluice COMMAND --help` prints it. */
struct command {
    const char *name;
    const char *usage;
};

static const struct command commands[] = {
    {"serve", "usage: sluice serve [--config FILE]\n"
              "  Run the gateway (default config: conf/sluice.lua). SIGHUP reloads the config and the\n"
              "  scripts; SIGTERM drains in-flight requests and exits 0. Exits 1 when the config or a\n"
              "  script is broken, or when another process already serves the listen address.\n"},
    {"migrate", "usage: sluice migrate [--config FILE] [up|status]\n"
                "  up (default): apply the migrations (NNNN_name.sql in the `migrations` folder) not yet\n"
                "  applied, in order, each in its own transaction. status: list applied and pending ones.\n"},
    {"check", "usage: sluice check [--config FILE]\n"
              "  Load every script and prepare every named query against the database; report unknown\n"
              "  tables, columns and types. Exits 1 on any error.\n"},
    {"import", "usage: sluice import [--config FILE] [--top N] [--output FILE]\n"
               "  Write named queries (Lua) for the N statements (default 20) with the most total time in\n"
               "  pg_stat_statements, to FILE or stdout. Only provably read-only statements get\n"
               "  readonly = true.\n"},
    {"new", "usage: sluice new NAME\n"
            "  Create a service skeleton (config, scripts, migrations, tests) in the folder NAME.\n"},
    {"version", "usage: sluice version\n"
                "  Print the versions of sluice, h2o and libpq.\n"},
};

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage:\n"
        "  sluice serve   [--config FILE]             run the gateway (default config: conf/sluice.lua)\n"
        "  sluice migrate [--config FILE] [up|status] apply migrations/NNNN_name.sql in order\n"
        "  sluice check   [--config FILE]             load every script, prepare every named query\n"
        "  sluice import  [--config FILE] [--top N] [--output FILE]\n"
        "                                             write named queries (Lua) for the N statements with "
        "the\n"
        "                                             most total time in pg_stat_statements (20; stdout)\n"
        "  sluice new     NAME                        create a service skeleton in the folder NAME\n"
        "  sluice version | --help\n"
        "  sluice COMMAND --help                      that command's usage\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    const struct command *known = find_command(cmd);
    if (known == NULL && strcmp(cmd, "--version") != 0) {
        fprintf(stderr, "sluice: unknown command \"%s\"\n", cmd);
        usage(stderr);
        return 2;
    }
    for (int i = 2; known != NULL && i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(known->usage, stdout);
            return 0;
        }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("sluice %s (h2o %s, libpq %d)\n", SLUICE_VERSION, H2O_VERSION, PQlibVersion());
        return 0;
    }
    if (strcmp(cmd, "new") == 0) {
        if (argc != 3 || argv[2][0] == '-') {
            fprintf(stderr, "usage: sluice new NAME\n");
            return 2;
        }
        return scaffold_new(argv[2]);
    }
    const char *config_path = "conf/sluice.lua";
    const char *arg = NULL, *top_arg = NULL, *output = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config_path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            config_path = argv[i] + 9;
        } else if (strcmp(argv[i], "--top") == 0 && i + 1 < argc) {
            top_arg = argv[++i];
        } else if (strncmp(argv[i], "--top=", 6) == 0) {
            top_arg = argv[i] + 6;
        } else if (strcmp(argv[i], "--output") == 0 && i + 1 < argc) {
            output = argv[++i];
        } else if (strncmp(argv[i], "--output=", 9) == 0) {
            output = argv[i] + 9;
        } else if (arg == NULL && argv[i][0] != '-') {
            arg = argv[i];
        } else {
            fprintf(stderr, "sluice: unexpected argument \"%s\"\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    bool is_serve = strcmp(cmd, "serve") == 0, is_migrate = strcmp(cmd, "migrate") == 0,
         is_check = strcmp(cmd, "check") == 0, is_import = strcmp(cmd, "import") == 0;
    if (!is_serve && !is_migrate && !is_check && !is_import) {
        fprintf(stderr, "sluice: unknown command \"%s\"\n", cmd);
        usage(stderr);
        return 2;
    }
    if (arg != NULL && !is_migrate) {
        fprintf(stderr, "sluice: unexpected argument \"%s\"\n", arg);
        return 2;
    }
    if ((top_arg != NULL || output != NULL) && !is_import) {
        fprintf(stderr, "sluice: --top and --output belong to `sluice import`\n");
        return 2;
    }
    int top = 20;
    if (top_arg != NULL) {
        char *end;
        long v = strtol(top_arg, &end, 10);
        if (*top_arg == '\0' || *end != '\0' || v < 1 || v > 10000) {
            fprintf(stderr, "sluice: --top: expected a number from 1 to 10000, got \"%s\"\n", top_arg);
            return 2;
        }
        top = (int)v;
    }

    struct config cfg;
    char err[512];
    if (config_load(config_path, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "sluice: %s\n", err);
        return 1;
    }
    log_setup((enum log_level)cfg.log_level, cfg.log_json);
    int rc;
    if (is_serve) {
        rc = serve_run(&cfg);
    } else if (is_check) {
        rc = check_run(&cfg);
    } else if (is_import) {
        rc = import_run(&cfg, top, output);
    } else {
        const char *sub = arg ? arg : "up";
        if (strcmp(sub, "up") != 0 && strcmp(sub, "status") != 0) {
            fprintf(stderr, "sluice: migrate takes \"up\" or \"status\", got \"%s\"\n", sub);
            config_free(&cfg);
            return 2;
        }
        const struct pool_config *primary = config_pool(&cfg, "primary");
        rc = migrate_run(primary ? primary->url : cfg.pools[0].url, cfg.migrations, sub);
    }
    config_free(&cfg);
    return rc;
}
