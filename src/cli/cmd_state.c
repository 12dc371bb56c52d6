/*
 * cmd_state.c - zdm state init URL: zdm's schema in a PostgreSQL database
 * (core/store_pg.c, docs/state.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/store.h"

int
cmd_state(const struct cmd *cmd, struct cli *c)
{
	const char *url = c->argv[1], *schema = c->schema;
	char *out = NULL, *err = NULL;

	if (strcmp(c->argv[0], "init") != 0) {
		fprintf(stderr, "zdm state: unknown subcommand '%s' (usage: zdm %s)\n", c->argv[0],
		    cmd->usage);
		return ZDM_EXIT_USAGE;
	}
	if (c->state != NULL || c->state_dir != NULL) {
		fprintf(stderr, "zdm state init: name the database as URL, not with --state or "
		    "--state-dir\n");
		return ZDM_EXIT_USAGE;
	}
	if (!store_is_pg(url)) {
		fprintf(stderr, "zdm state init: URL must be a PostgreSQL connection string "
		    "(postgresql://USER@HOST:PORT/DB or key=value conninfo); a state dir needs no init\n");
		return ZDM_EXIT_USAGE;
	}
	if (schema == NULL)
		schema = getenv("ZDM_STATE_SCHEMA") && *getenv("ZDM_STATE_SCHEMA") ?
		    getenv("ZDM_STATE_SCHEMA") : NULL;
	if (store_init_pg(url, schema, &out, &err) != 0) {
		fprintf(stderr, "zdm state init: %s\n", err);
		free(err);
		return ZDM_EXIT_USAGE;
	}
	printf("%s\n", out);
	free(out);
	return ZDM_EXIT_OK;
}
