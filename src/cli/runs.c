/*
 * runs.c - which run an argument names: the state dir of a runbook, and
 * RUN_ID | RUNBOOK | JOURNAL arguments, found through the store (store.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"
#include "base/ynode.h"
#include "cli/cli.h"
#include "core/store.h"

/* the --state / --state-dir / ZDM_STATE / ZDM_STATE_DIR in force, or NULL */
static const char *
state_spec(const struct cli *c)
{
	const char *env = getenv("ZDM_STATE"), *envd = getenv("ZDM_STATE_DIR");

	if (c->state != NULL)
		return c->state;
	if (c->state_dir != NULL)
		return c->state_dir;
	if (env != NULL && *env != '\0')
		return env;
	if (envd != NULL && *envd != '\0')
		return envd;
	return NULL;
}

char *
state_dir_for(const struct cli *c, const char *runbook)
{
	const char *spec = state_spec(c);
	char *dir, *abs;

	if (spec != NULL)
		return path_abs(spec);
	if (runbook == NULL)
		return path_abs(".zdm");
	dir = path_dirname(runbook);
	abs = strcmp(dir, ".") == 0 ? xstrdup(".zdm") : path_join(dir, ".zdm");
	free(dir);
	dir = path_abs(abs);
	free(abs);
	return dir;
}

struct store *
state_open(const struct cli *c, const char *runbook, const char *cmd)
{
	const char *spec = state_spec(c), *schema = c->schema;
	struct store *s;
	char *err = NULL, *sd;

	if (c->state != NULL && c->state_dir != NULL) {
		fprintf(stderr, "zdm %s: give --state or --state-dir, not both\n", cmd);
		return NULL;
	}
	if (schema == NULL)
		schema = getenv("ZDM_STATE_SCHEMA") && *getenv("ZDM_STATE_SCHEMA") ?
		    getenv("ZDM_STATE_SCHEMA") : NULL;
	if (spec != NULL && store_is_pg(spec)) {
		s = store_open_pg(spec, schema, &err);
		if (s == NULL) {
			/* never the connection string: it is the user's to show */
			fprintf(stderr, "zdm %s: %s: %s\n", cmd, c->state != NULL ? "--state" : "ZDM_STATE",
			    err);
			free(err);
		}
		return s;
	}
	if (c->schema != NULL) {
		fprintf(stderr, "zdm %s: --schema is for a PostgreSQL state (--state postgresql://...)\n",
		    cmd);
		return NULL;
	}
	sd = state_dir_for(c, runbook);
	s = store_open_dir(sd);
	free(sd);
	return s;
}

bool
is_runbook_path(const char *a)
{
	size_t n = strlen(a);
	struct stat st;

	if (n > 6 && strcmp(a + n - 6, ".jsonl") == 0)
		return false;
	return stat(a, &st) == 0 && S_ISREG(st.st_mode);
}

static bool
with_dry(const char *cmd)
{
	return strcmp(cmd, "resume") != 0 && strcmp(cmd, "rollback") != 0;
}

/*
 * [RUN_ID | RUNBOOK | JOURNAL] -> the store of its state dir and the run's
 * ref in it.  With a runbook, its newest run.  Prints the error and
 * returns NULL when none.
 */
struct store *
find_run(const struct cli *c, const char *arg, const char *cmd, char **ref)
{
	struct store *s;
	char *sd;

	*ref = NULL;
	if (arg != NULL && strlen(arg) > 6 && strcmp(arg + strlen(arg) - 6, ".jsonl") == 0) {
		char *abs = path_abs(arg);

		if (access(abs, R_OK) != 0) {
			fprintf(stderr, "zdm %s: cannot read journal '%s': %s\n", cmd, arg, strerror(errno));
			free(abs);
			return NULL;
		}
		sd = store_dir_of_journal(abs);
		s = store_open_dir(sd);
		free(sd);
		*ref = abs;
		return s;
	}
	if (arg != NULL && is_runbook_path(arg)) {
		struct yerrs e = { 0 };
		struct ynode *root = yparse_file(arg, arg, &e);
		const struct ynode *n = ymap_get(root, "name");

		s = state_open(c, arg, cmd);
		if (s == NULL) {
			ynode_free(root);
			yerrs_release(&e);
			return NULL;
		}
		if (n != NULL && n->kind == Y_SCALAR)
			*ref = store_latest(s, n->str, with_dry(cmd));
		else if (e.n > 0)
			print_errors(&e);
		else
			fprintf(stderr, "zdm %s: '%s' is not a runbook (no name:); name a RUN_ID, a runbook or a journal\n",
			    cmd, arg);
		if (*ref == NULL && n != NULL)
			fprintf(stderr, "zdm %s: no runs of runbook '%s' in %s\n", cmd, n->str, store_location(s));
		ynode_free(root);
		yerrs_release(&e);
		if (*ref == NULL) {
			store_close(s);
			return NULL;
		}
		return s;
	}
	s = state_open(c, NULL, cmd);
	if (s == NULL)
		return NULL;
	*ref = arg == NULL ? store_latest(s, NULL, with_dry(cmd)) : store_find(s, arg);
	if (*ref == NULL && arg == NULL)
		fprintf(stderr, "zdm %s: no runs in %s (name a RUN_ID or RUNBOOK, or set --state-dir)\n",
		    cmd, store_location(s));
	else if (*ref == NULL)
		fprintf(stderr, "zdm %s: no run '%s' in %s (name the runbook, or set --state-dir / ZDM_STATE_DIR)\n",
		    cmd, arg, store_location(s));
	if (*ref == NULL) {
		store_close(s);
		return NULL;
	}
	return s;
}
